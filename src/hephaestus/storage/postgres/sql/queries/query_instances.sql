-- Runs matching every given filter (a NULL parameter means "no filter"), ordered and paginated.
{select_runs}
WHERE (%(id)s::text IS NULL OR h.id = %(id)s::text)
  AND (%(statuses)s::text[] IS NULL OR h.status = ANY (%(statuses)s::text[]))
  AND (%(workflows)s::text[] IS NULL OR h.workflow = ANY (%(workflows)s::text[]))
  AND (%(workflow_version)s::int IS NULL OR h.workflow_version = %(workflow_version)s::int)
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
