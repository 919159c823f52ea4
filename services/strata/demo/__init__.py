"""The main job: a whole labeling campaign on embedded defaults (`strata demo`)."""
