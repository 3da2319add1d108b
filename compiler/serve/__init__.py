"""`mtlsc serve`: a long-lived process that has imported the compiler, so that each `mtlsc`
command started next to it runs without Python's start-up and imports (docs/scale.md
"The server").

- `protocol`: the socket, the request and the replies;
- `client`: what the `mtlsc` executable does first (hand the command over, or run it here);
- `server`: the loop that accepts commands and forks one worker per command;
- `worker`: what a forked worker does to become the process the client would have been;
- `watch`: the output directories' identities, kept current from inotify events.
"""
