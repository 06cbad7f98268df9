# Build the frozen Windows agent (run on Windows with Python 3.11 x64 from python.org, in a checkout):
#   powershell -ExecutionPolicy Bypass -File installer\windows\build-agent.ps1
# Then, on any machine with wixl (Debian/Ubuntu):  mamori package msi ... --payload dist\mamori
# NOT YET RUN in CI (no Windows builder): check the result with dist\mamori\mamori.exe agent doctor.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")
py -3.11 -m venv build\freeze-venv
& build\freeze-venv\Scripts\python.exe -m pip install --quiet . pyinstaller
Set-Location installer\windows
& ..\..\build\freeze-venv\Scripts\pyinstaller.exe --noconfirm --distpath ..\..\dist --workpath ..\..\build\pyinstaller mamori-agent.spec
& ..\..\dist\mamori\mamori.exe --version
Write-Host "frozen agent in dist\mamori (mamori.exe, mamoriw.exe): pass it to mamori package msi --payload"
