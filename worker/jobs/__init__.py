"""Jobs: one lifecycle (:mod:`worker.jobs.lifecycle`) and the jobs that run through it (an
update in each of its modes, a rebuild, a tenant's teacher round)."""
