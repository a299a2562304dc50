"""One module per transport; each turns a launch request into a LaunchPlan and runs nothing."""
