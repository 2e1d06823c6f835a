//===- TileTypes.td - Types of the tile dialect ---------------------------===//
#ifndef TILE_TYPES_TD
#define TILE_TYPES_TD

include "TileBase.td"

def Tile_RoutingType : Tile_Type<"Routing", "routing"> {
  let summary = "per-token expert choices of a MoE router";
  let description = [{
    For each of `tokens` tokens, `top_k` expert indices in [0, experts) and their
    combine weights (f32).
  }];
  let parameters = (ins "int64_t":$tokens, "int64_t":$topK, "int64_t":$experts);
  let assemblyFormat = "`<` `tokens` `=` $tokens `,` `top_k` `=` $topK `,` `experts` `=` $experts `>`";
  let genVerifyDecl = 1;
}

def Tile_TokenType : Tile_Type<"Token", "token"> {
  let summary = "orders a KV-cache write before the ops that read it";
}

#endif // TILE_TYPES_TD
