"""The class view: what the teaching team sees of the room (see ``room``)."""
