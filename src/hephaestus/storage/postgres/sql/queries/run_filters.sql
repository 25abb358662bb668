-- The filters of a query (a NULL parameter means "no filter"), composed into the statements
-- that read or count runs. Given constants, the planner drops the unused branches and serves
-- each filter by its index: an id prefix (LIKE) by `workflow_instances_id_pattern`, metadata
-- containment by the GIN index on `state`, time ranges by `workflow_instances_created` and
-- `workflow_instances_updated`, the keyset condition by `workflow_instances_created`.
(%(id)s::text IS NULL OR h.id = %(id)s::text)
  AND (%(id_pattern)s::text IS NULL OR h.id LIKE %(id_pattern)s::text)
  AND (%(statuses)s::text[] IS NULL OR h.status = ANY (%(statuses)s::text[]))
  AND (%(workflows)s::text[] IS NULL OR h.workflow = ANY (%(workflows)s::text[]))
  AND (%(workflow_version)s::int IS NULL OR h.workflow_version = %(workflow_version)s::int)
  AND (%(contains)s::jsonb IS NULL OR h.state @> %(contains)s::jsonb)
  AND (%(created_after)s::timestamptz IS NULL OR h.created_at >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR h.created_at < %(created_before)s::timestamptz)
  AND (%(updated_after)s::timestamptz IS NULL OR h.updated_at >= %(updated_after)s::timestamptz)
  AND (%(updated_before)s::timestamptz IS NULL OR h.updated_at < %(updated_before)s::timestamptz)
  AND (%(after_created)s::timestamptz IS NULL
       OR (h.created_at, h.seq) {after} (%(after_created)s::timestamptz, %(after_seq)s::bigint))
