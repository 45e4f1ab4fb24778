"""Publishing: make the bus match galley's desired state, and keep it so across bus restarts."""
