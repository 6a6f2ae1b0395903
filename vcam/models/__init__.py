"""Models: the store (where model files come from), the runtime (onnxruntime sessions), the
matting models behind one interface (:mod:`.matting`) and MobileSAM (:mod:`.sam`)."""
