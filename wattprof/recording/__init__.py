"""Recording a run: the sampling loop and everything around it.

``session`` (one :class:`~wattprof.recording.session.RecordingSession`: writer, collectors,
recorder, finalisation, summary) is used by ``wattprof record``, ``profile()``, the sampler process
and the framework callbacks; ``recorder`` is the sampling loop, ``intake`` takes each collector's
reading into the run; ``sampler`` runs a session in its own process (``profile()``); ``command``
and ``child`` run the recorded command (signals, exit status, the parent-death signal).

Kept empty of imports: ``import wattprof`` stays light.
"""
