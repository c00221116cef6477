"""The dress rehearsal: a workshop's own notebooks run cell by cell by simulated attendees, and a verdict.

``python -m loadtest URL --rehearse FOLDER_OR_NOTEBOOKS --attendees N``
(``make rehearse``): each simulated attendee clicks the public link, uploads
the notebooks its container lacks, runs every code cell at a classroom's
pace, and is measured through the admin API (peak memory, CPU, disk). The
verdict says whether this service carries the workshop, and which settings
would, with the numbers behind each.
"""

from .material import MaterialError, Notebook, read_material
from .run import RehearsalSettings, rehearse

__all__ = ["MaterialError", "Notebook", "RehearsalSettings", "read_material", "rehearse"]
