"""Spare trees: a second copy of each large output directory, through which an edit of a few
files is written in time proportional to the edit (docs/output.md "Crash safety").

- `trees`: where spares live, when one is usable, keeping or linking one;
- `state`: the record of what a spare holds (directory identities, files that differ);
- `view`: what a write sees of a spare, from its record or a listing;
- `plan`: what one output directory's spare needs for a change;
- `write`: `write_changes`, the changes of several directories written and swapped in;
- `keep`: what the full writer does for spares (keep the swapped-out tree, link new ones).
"""
