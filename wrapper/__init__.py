"""Everything around the TF1 pretraining code: corpus, vocab, hparams, conversion, checks."""
