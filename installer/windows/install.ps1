# Install the Mamori agent for all users (run elevated). Intune/GPO can run this script or deploy the same files.
#   .\install.ps1 -Wheel mamori-0.1.0-py3-none-any.whl -PublicKey policy-signing.pub [-Bundle policy.dsse.json]
param(
  [Parameter(Mandatory = $true)][string]$Wheel,
  [Parameter(Mandatory = $true)][string]$PublicKey,
  [string]$Bundle
)
$ErrorActionPreference = "Stop"
$root = Join-Path $env:ProgramFiles "Mamori"
$data = Join-Path $env:ProgramData "Mamori"
py -3.11 -m venv $root
& (Join-Path $root "Scripts\pip.exe") install --quiet $Wheel
New-Item -ItemType Directory -Force -Path $data | Out-Null
Copy-Item $PublicKey (Join-Path $data "policy-signing.pub") -Force
if ($Bundle) { Copy-Item $Bundle (Join-Path $data "policy.dsse.json") -Force }
$config = Join-Path $data "agent.toml"
if (-not (Test-Path $config)) {
  @"
trusted_keys = ["$($data -replace '\\','/')/policy-signing.pub"]
policy_bundle = "$($data -replace '\\','/')/policy.dsse.json"
tray = true
"@ | Set-Content -Encoding UTF8 $config
}
# Start in every user's session at logon (the agent needs the interactive desktop).
$exe = Join-Path $root "Scripts\mamori.exe"
$action = New-ScheduledTaskAction -Execute $exe -Argument "agent run --config `"$config`""
$trigger = New-ScheduledTaskTrigger -AtLogOn
$principal = New-ScheduledTaskPrincipal -GroupId "S-1-5-32-545" -RunLevel Limited
Register-ScheduledTask -TaskName "Mamori Agent" -Action $action -Trigger $trigger -Principal $principal -Force | Out-Null
Write-Host "Mamori installed. It starts at the next logon; check with: mamori agent doctor"
