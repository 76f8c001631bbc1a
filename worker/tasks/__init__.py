"""One module per kind of task, each a plain async function from a TaskRun to its result.

probe: the input's description. transcode: one whole output. chunk: one piece of a chunked
output (a time range of its video, or its whole audio). merge: a chunked output's pieces
joined. worker.tasks.kinds says which function runs which kind of task.
"""
