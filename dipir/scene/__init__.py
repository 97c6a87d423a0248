"""The insertion problem: the scene contract (scene.yaml), object assets, plane geometry."""
