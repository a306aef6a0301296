"""Running a pipeline: the engine, its events, the journal, jobs, results, budget and cost estimate."""
