"""Model discovery (GGUF headers) and the llama.cpp engine."""
