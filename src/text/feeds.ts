// A padded batch of encodings as the standard BERT-style ONNX inputs.
import * as ort from 'onnxruntime-node';
import type { EncodedBatch } from './tokenizer.js';

/** The standard BERT-style inputs of a padded batch as ONNX Runtime tensors. */
export function tokenFeeds(batch: EncodedBatch, withTokenTypes = true): Record<string, ort.Tensor> {
  const dims = [batch.size, batch.length];
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', batch.inputIds, dims),
    attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
  };
  if (withTokenTypes) feeds.token_type_ids = new ort.Tensor('int64', batch.tokenTypeIds, dims);
  return feeds;
}
