"""The text-query Mask2Former head of MFuser (tqdm): pixel decoder, transformer decoder, losses."""
from .criterion import MFuserCriterion, score_map_loss
from .head import MFuserHead
from .pixel_decoder import MFuserPixelDecoder, TextPixelDecoderLayer
from .position_encoding import PositionEmbeddingSine
from .transformer_decoder import MaskedAttentionDecoderLayer, TextQueryTransformerDecoder

__all__ = [
    "MFuserCriterion",
    "MFuserHead",
    "MFuserPixelDecoder",
    "MaskedAttentionDecoderLayer",
    "PositionEmbeddingSine",
    "TextPixelDecoderLayer",
    "TextQueryTransformerDecoder",
    "score_map_loss",
]
