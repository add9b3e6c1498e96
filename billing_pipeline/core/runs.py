"""How the pipeline's Dagster runs are tagged, so the run queue can keep them apart.

Every job that writes billing state carries ``billing/lane: money``. The instance's run queue
(``db.dagster_instance``) allows one run of that lane at a time, so a run the daemon starts (a
sensor, a schedule) and a run ``billing run`` starts never execute at once: the later one waits
in the queue. ``billing run`` without a daemon takes the same lane through a PostgreSQL advisory
lock (``orchestration.launcher``).
"""

LANE_TAG = "billing/lane"
MONEY_LANE = "money"

JOB_TAGS = {LANE_TAG: MONEY_LANE}
