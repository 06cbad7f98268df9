@echo off
rem Enroll this PC once, machine-wide (run as SYSTEM by the MSI): enroll.cmd SERVER_URL ENROLL_SECRET GROUP
rem The enrollment lands in %ProgramData%\Mamori\state, which every user's agent reads; an enrolled PC is never
rem enrolled again, so reinstalling or repairing keeps the device.
setlocal
set "STATE=%ProgramData%\Mamori\state"
if exist "%STATE%\enrollment.json" exit /b 0
if "%~2"=="" exit /b 0
"%~dp0mamori.exe" agent enroll --json --server "%~1" --secret "%~2" --config "%ProgramData%\Mamori\machine.toml" > "%ProgramData%\Mamori\enroll.log" 2>&1
exit /b %ERRORLEVEL%
