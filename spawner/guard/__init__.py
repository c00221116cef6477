"""The abuse guard: miners, CPU hogs and scanners on a public link, and the bans that follow (issue 25).

``guard`` (AbuseGuard: the settings and each pass), ``bans`` and ``webhook``; what a container does, read on
its host, is ``spawner.probe``, below the pool and the engines, which a node agent (spawner.agent) carries too.
"""
