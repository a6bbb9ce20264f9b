"""Sparse autoencoders over ACT's encoder tokens: collecting them, training, OOD scores, steering.

Read in the order the work goes (each module says why it exists in its first line):

* collecting: ``collect`` (a policy over dataset episodes), ``activations`` (the shard files it
  writes), ``sizing`` (the estimate and ``--max-disk`` refusal before any work), ``distributed``
  (``torchrun`` ranks);
* training: ``shards`` (lazy, checked reads), ``stream`` (the bounded shuffle buffer),
  ``train_stream`` and ``train`` (the loop, one process or data-parallel), ``sparse_encoder``,
  ``largest`` and ``heap`` (its fast paths), ``model`` (the SAE and its directory), ``metrics``,
  ``plots`` and ``train_output`` (the directory ``pai sae train`` writes);
* out of distribution: ``frame`` (a forward pass's tokens to frame level), ``ood`` (the scores
  and their calibration file), ``position_score`` and ``camera_state`` (the stronger scores),
  ``ood_files`` (their tensor files), ``calibrate`` (``pai sae calibrate``);
* causal use: ``steering`` (changing chosen features inside a forward pass).

``errors`` names what can go wrong (a damaged activations file, a disk budget, ranks that
disagree, an SAE file or an SAE of another policy, data too small to fit a score on).
``commands`` holds the ``pai sae`` subcommands; nothing in the library imports it.
"""
