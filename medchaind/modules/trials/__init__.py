"""Trials: registered protocols and outcomes, amendments, consented enrolment, data
commitments and outcome-switching detection (see :mod:`.machine`)."""

from .machine import TrialsModule as TrialsModule
