// Tells the server the browser's time zone (a "tz" cookie), so the console shows times in the viewer's zone.
// Without it the server uses Asia/Tokyo for a Japanese page and UTC for an English one.
(function () {
  var tz;
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!tz) { return; }
  var shown = document.body.getAttribute("data-tz");
  var had = document.cookie.split("; ").some(function (c) { return c === "tz=" + encodeURIComponent(tz); });
  document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=strict";
  // Reload once when the page was drawn in another zone than the browser's (the first visit).
  if (shown && shown !== tz && !had && !sessionStorage.getItem("mamori-tz-reloaded")) {
    sessionStorage.setItem("mamori-tz-reloaded", "1");
    location.reload();
  }
})();
