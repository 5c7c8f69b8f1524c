"""How Footprint's tables would be laid out on Citus, the one declared list.

Citus distributes a table by one column and can only enforce a primary key or unique index that
includes it. Footprint's distribution column is ``workspace_id``: a workspace's guests, events,
sessions and segments live on one node, and every query of the product names one workspace.

``tests/test_distribution.py`` reads the PostgreSQL catalog and fails when an app table is not
named here, when a distributed table has a primary key or unique index without
``workspace_id`` that ``EXCEPTIONS`` does not list, or when ``EXCEPTIONS`` lists one that is
gone (so the list stays exact). The README's *At scale* section explains it to operators.
"""

# Distributed by workspace_id, colocated with each other.
DISTRIBUTED = {
    "tracking_event",
    "tracking_dedupkey",
    "tracking_failedevent",
    "tracking_workspace_members",
    "tracking_eventrollup",
    "tracking_failedeventrollup",
    "tracking_catalogueevent",
    "tracking_cataloguekey",
    "tracking_eventtyperollup",
    "profiles_guest",
    "profiles_identity",
    "profiles_session",
    "profiles_guestmerge",
    "profiles_erasure",
    "profiles_suppressedidentity",
    "profiles_segment",
    "profiles_segmentmembership",
    "profiles_segmentrun",
    "profiles_guestday",
    "profiles_guestrollup",
    "experiences_experience",
    "experiences_experience_target_segments",
    "experiences_experience_exclusion_segments",
    "experiences_variant",
    "experiences_metric",
    "experiences_assignment",
    "experiences_flowexecution",
}

# Small tables every node needs whole: a door finds its source by write key before it knows
# the workspace.
REFERENCE = {"tracking_workspace", "tracking_source"}

# Work queues claimed across all workspaces with FOR UPDATE SKIP LOCKED, which Citus runs only
# on one shard: they stay plain tables on the coordinator.
LOCAL = {"tracking_inboxrequest", "profiles_dirtyguest"}

_REFERENCED_ID = (
    "the surrogate id primary key, referenced by foreign keys from {refs}: distributing needs a "
    "(workspace_id, id) key here and composite foreign keys there, one migration per table"
)
_NO_COLUMN = (
    "no workspace_id column: the workspace is reached through {parent}; distributing needs the "
    "column (filled from {parent}) before create_distributed_table"
)

# (table, key columns or None for "no workspace_id column") -> why it is so for now.
EXCEPTIONS: dict[tuple[str, tuple[str, ...] | None], str] = {
    ("profiles_guest", ("id",)): _REFERENCED_ID.format(
        refs="events, identities, sessions, merges, memberships, assignments, flow executions "
        "and guests (merged_into)"
    ),
    ("profiles_session", ("id",)): _REFERENCED_ID.format(refs="events and flow executions"),
    ("profiles_segment", ("id",)): _REFERENCED_ID.format(
        refs="memberships, runs and experiences' target and exclusion segments"
    ),
    ("profiles_erasure", ("id",)): _REFERENCED_ID.format(refs="suppressed identities"),
    ("experiences_experience", ("id",)): _REFERENCED_ID.format(
        refs="variants, assignments, flow executions and the segment lists"
    ),
    ("profiles_guestday", ("guest_id", "day")): (
        "the key the daily rollup's upsert names as its conflict target; a guest belongs to one "
        "workspace, so (workspace_id, guest_id, day) is the same key: change the constraint "
        "and the upsert together"
    ),
    ("profiles_segmentmembership", None): _NO_COLUMN.format(parent="segment_id"),
    ("profiles_segmentrun", None): _NO_COLUMN.format(parent="segment_id"),
    ("experiences_variant", None): _NO_COLUMN.format(parent="experience_id"),
    ("experiences_metric", None): _NO_COLUMN.format(parent="experience_id"),
    ("experiences_assignment", None): _NO_COLUMN.format(parent="experience_id"),
    ("experiences_flowexecution", None): _NO_COLUMN.format(parent="experience_id"),
    ("experiences_experience_target_segments", None): _NO_COLUMN.format(parent="experience_id"),
    ("experiences_experience_exclusion_segments", None): _NO_COLUMN.format(parent="experience_id"),
}
