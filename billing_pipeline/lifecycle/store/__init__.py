"""Every SQL statement of the lifecycle, by concern. Other lifecycle modules call these functions
and issue no SQL of their own.

* ``core``: accounts, the persisted machine state, deployments, domains, events, formatting;
* ``actions``: the current state of each cluster action (what ``billing status`` reports);
* ``routing``: Ingress specs saved while suspended, replica counts saved while scaled to zero;
* ``cleanup``: cleanups, their objects, expiry snapshots, and the idle-deployment query.
"""

from billing_pipeline.lifecycle.store.actions import *  # noqa: F403
from billing_pipeline.lifecycle.store.cleanup import *  # noqa: F403
from billing_pipeline.lifecycle.store.core import *  # noqa: F403
from billing_pipeline.lifecycle.store.routing import *  # noqa: F403
