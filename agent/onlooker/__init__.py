"""The onlooker guard (docs/onlooker.md): faces counted on the device cover customer-data windows.

- ``process.py``: the guard process, the only code that touches the camera and OpenCV;
- ``protocol.py``: the line-JSON protocol between it and the agent (numbers and codes only);
- ``confirm.py``: pure confirmation and clearing of an onlooker over face counts;
- ``guard.py``: the supervised worker in the agent process and ``install_onlooker_guard``.
"""
