def predict_clusters(*a, **k): raise NotImplementedError
