"""A small association client over plain TCP, for commands whose start-up time is the product.

``import pynetdicom`` costs more than a whole C-ECHO: it imports pydicom, and pydicom imports
numpy and its pixel machinery. ``dcmtool echo`` over plain TCP needs none of it: ``pdus``
packs and parses the few PDUs it sends and reads (PS3.8 9.3), ``client`` runs one association
on the calling thread, and ``outcomes`` says how an association attempt ended, in the same
words for this client and for pynetdicom's (``net.association``). Standard library only, and
dcmtool modules that are pydicom-free; nothing here imports pynetdicom, pydicom or numpy.
"""
