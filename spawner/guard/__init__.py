"""The abuse guard: miners, CPU hogs and scanners on a public link, and the bans that follow (issue 25).

``guard`` (AbuseGuard: the settings and each pass), ``bans``, ``webhook``, and ``probe`` (what a container
does, read on its host). Nothing is imported here: a node agent (spawner.agent) carries ``probe`` alone.
"""
