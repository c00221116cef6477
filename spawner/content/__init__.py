"""Workshop material from git repositories: fetched once on nbpool's machine, poured into warm containers."""

from .gitcache import FetchError, GitCache
from .library import Delivery, Material
from .sources import Allowed, Source, SourceError, binder_repo, parse_pull_link, parse_sources

__all__ = ["Allowed", "Delivery", "FetchError", "GitCache", "Material", "Source", "SourceError", "binder_repo",
           "parse_pull_link", "parse_sources"]
