/*
 * sft_tokenizer_glue.h: the name src/model_catalog.c includes; the
 * declarations live in tokenizer.h.
 */
#include "tokenizer.h"
