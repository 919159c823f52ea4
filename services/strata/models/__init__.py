"""Model families shared by training (which fits them) and inference (which serves them).

Every family has explicit, ordered layer groups (group 1 is the output head,
group K the nearest to the input) and one artifact format; see `families` and
`artifact`.
"""
