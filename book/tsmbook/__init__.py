"""tsmbook: the helpers of the tsm-book chapters, beside the library they teach (``tsmlib``).

``tsmlib`` holds what a user of the library calls on their own CNN; this package holds what only the
book's pages need: the house style (:mod:`.style`), the figures, the verdict rules and the sentences the
chapters print, the benchmark tables, the offline explorer, and the synthetic self-supervised benchmark
with its training (:mod:`.synthetic`). ``tsmlib`` never imports it.

Importing it registers the synthetic benchmark's four models in tsmlib's model registry
(``tsmlib.load_model("synthetic_simclr")``) and its scenes as the data set ``synthetic`` of
``tsmlib evaluate`` (:func:`tsmbook.synthetic.zoo.register`).
"""

from .synthetic.zoo import register as _register

_register()
