"""The training-free video token compressors (one module each); `compressors.all_compressors` imports them."""
