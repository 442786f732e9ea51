#!/usr/bin/env python
"""Mapillary Vistas: convert the v1.2 labels (palette PNGs; their palette *indices* are the 66 Vistas class
ids) from ``{training,validation}/v1.2/labels/`` or ``{training,validation}/labels/`` to Cityscapes trainIds
in ``ROOT/cityscapes_trainIdLabel/{train,val}/label/<name>.png``.

The id mapping is ``mfuser.data.classes.MAPILLARY_V12_ID_TO_TRAINID`` (the DAFormer/HRDA/MIC standard:
road <- road, lane marking general, manhole; sidewalk <- curb, sidewalk; ...; everything else ignored);
``--mapping FILE.json`` ({"vistas_id": trainId, ...}) replaces it.
``--half`` also writes ``half/val_img/<name>.jpg`` and ``half/val_label/<name>.png`` at half resolution.

    python datasets/prepare_mapillary.py datasets/mapillary [--workers N] [--overwrite] [--half] [--splits val]
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.mapillary import main

if __name__ == "__main__":
    sys.exit(run_main(main))
