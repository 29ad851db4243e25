"""sepconv-serve: a FastAPI service for the regular and separable CIFAR-10 classifiers."""
