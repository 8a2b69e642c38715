"""omnizoo.saved (internal; the public API is omnizoo.__all__): the files omnizoo writes for a
model and reads back, each reader beside its writer. A ``save_pretrained`` folder
(:mod:`.folder`: ``card.json`` + ``model.safetensors``) and an exported ``.onnx``'s metadata
(:mod:`.onnx_metadata`)."""
