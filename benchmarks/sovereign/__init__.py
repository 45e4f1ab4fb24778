"""Side by side with sovereign: the same clusters and the same real Envoys on meshplane and on sovereign."""
