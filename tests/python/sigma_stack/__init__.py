"""The whole sigma chain on one machine: emulators, fakes, the real services and the real workflow.

`Stack` (stack.py) starts everything and tears it down; `Workflow` (emulator.py) runs
workflows/sigma.yaml under workflows-emulator against it.
"""
