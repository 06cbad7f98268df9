"""``mamori package (deb|msi|pkg)``: per-OS installers with the agent's configuration and enrollment baked in.

bake.py checks what IT passes (server, enrollment secret, trusted keys, policy, CA) once and renders the files
every OS installs; deb.py, msi.py and macos.py each lay those out the way their OS expects. This package may
import core and policy (to check keys and the policy before baking them), never the agent's internals.
"""
