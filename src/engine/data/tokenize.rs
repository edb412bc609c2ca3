//! Documents to one token stream, in parallel with rayon. Plain text: `[bos] doc eos`
//! per document, every token trained. Chat: each conversation rendered through the chat
//! template and encoded whole; a per-token mask marks the assistant turns, found by
//! rendering the conversation up to each assistant turn (see `assistant_spans`).

use super::source::{Conversation, Documents};
use crate::engine::chat::{render, Message};
use rayon::prelude::*;
use std::ops::Range;
use tokenizers::Tokenizer;

/// The token stream of a whole source. `mask[i]` says whether token `i` counts as a
/// target; `None` means every token does.
pub(super) struct TokenStream {
    pub ids: Vec<u32>,
    pub mask: Option<Vec<u8>>,
    pub documents: usize,
}

/// What goes around documents: ids added by kdl, not by the tokenizer's post-processor.
pub(super) struct Framing<'a> {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub template: &'a str,
}

/// A copy that never truncates or pads: a `tokenizer.json` may carry a `max_length`
/// meant for classification, which would silently cut documents.
fn unbounded(tokenizer: &Tokenizer) -> Tokenizer {
    let mut tok = tokenizer.clone();
    let _ = tok.with_truncation(None);
    tok.with_padding(None);
    tok
}

pub(super) fn tokenize(docs: &Documents, tokenizer: &Tokenizer, framing: &Framing) -> Result<TokenStream, String> {
    let tok = unbounded(tokenizer);
    match docs {
        Documents::Text(docs) => {
            let pieces: Vec<&str> = docs.iter().flat_map(|d| d.pieces.iter().map(String::as_str)).collect();
            let encoded: Vec<Vec<u32>> = pieces
                .par_iter()
                .map(|p| tok.encode_fast(*p, false).map(|e| e.get_ids().to_vec()).map_err(|e| format!("tokenizing failed: {e}")))
                .collect::<Result<_, _>>()?;
            let mut encoded = encoded.into_iter();
            let mut ids = Vec::with_capacity(pieces.iter().map(|p| p.len() / 3).sum());
            for doc in docs {
                ids.extend(framing.bos);
                for _ in &doc.pieces {
                    ids.extend(encoded.next().unwrap_or_default());
                }
                ids.extend(framing.eos);
            }
            Ok(TokenStream { ids, mask: None, documents: docs.len() })
        }
        Documents::Chat(convs) => {
            // Templates that place `bos_token` themselves get it there; others get it in front.
            let bos_text = framing.bos.and_then(|id| tok.id_to_token(id)).unwrap_or_default();
            let eos_text = framing.eos.and_then(|id| tok.id_to_token(id)).unwrap_or_default();
            let lead = framing.bos.filter(|_| !framing.template.contains("bos_token"));
            let encoded: Vec<(Vec<u32>, Vec<u8>)> = convs
                .par_iter()
                .map(|c| {
                    let (text, spans) = assistant_spans(c, framing.template, &bos_text, &eos_text)?;
                    let enc = tok.encode(text.as_str(), false).map_err(|e| format!("{}:{}: tokenizing failed: {e}", c.file, c.line))?;
                    Ok((enc.get_ids().to_vec(), mask_from_spans(enc.get_offsets(), &spans)))
                })
                .collect::<Result<_, String>>()?;
            let total: usize = encoded.iter().map(|(ids, _)| ids.len() + lead.is_some() as usize).sum();
            let (mut ids, mut mask) = (Vec::with_capacity(total), Vec::with_capacity(total));
            for (conv_ids, conv_mask) in encoded {
                if let Some(b) = lead {
                    ids.push(b);
                    mask.push(0);
                }
                ids.extend(conv_ids);
                mask.extend(conv_mask);
            }
            Ok(TokenStream { ids, mask: Some(mask), documents: convs.len() })
        }
    }
}

fn render_at(c: &Conversation, template: &str, messages: &[Message], open: bool, bos: &str, eos: &str) -> Result<String, String> {
    render(template, messages, open, bos, eos).map_err(|e| format!("{}:{}: {e}", c.file, c.line))
}

/// The rendered conversation and the byte ranges of it that are trained: for each
/// assistant turn `i`, what `messages[..=i]` adds to `messages[..i]` with the assistant
/// turn opened — its content and end token. The newline a template writes after the end
/// token is not trained, as at inference generation stops at the end token.
pub(super) fn assistant_spans(c: &Conversation, template: &str, bos: &str, eos: &str) -> Result<(String, Vec<Range<usize>>), String> {
    let messages = &c.messages;
    let full = render_at(c, template, messages, false, bos, eos)?;
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        // Some templates cannot render an empty conversation; nothing comes before turn 0 then.
        let before = if i == 0 {
            render(template, &[], true, bos, eos).unwrap_or_default()
        } else {
            render_at(c, template, &messages[..i], true, bos, eos)?
        };
        let through = render_at(c, template, &messages[..=i], false, bos, eos)?;
        if !through.starts_with(&before) || !full.starts_with(&through) {
            return Err(format!(
                "{}:{}: the chat template does not render assistant turn {} as a continuation of the turns before it, so its tokens cannot be masked; use a template whose turns only append (chatml, zephyr, llama2)",
                c.file,
                c.line,
                i + 1
            ));
        }
        let trimmed = through.trim_end_matches(|ch: char| ch.is_ascii_whitespace()).len().max(before.len());
        if trimmed > before.len() {
            spans.push(before.len()..trimmed);
        }
    }
    Ok((full, spans))
}

/// 1 for each token whose byte range overlaps a span (a token straddling the start of an
/// assistant turn holds some of its text, so it is trained).
fn mask_from_spans(offsets: &[(usize, usize)], spans: &[Range<usize>]) -> Vec<u8> {
    let mut mask = Vec::with_capacity(offsets.len());
    let mut k = 0;
    for &(start, end) in offsets {
        while k < spans.len() && spans[k].end <= start {
            k += 1;
        }
        let inside = k < spans.len() && {
            let s = &spans[k];
            if end > start { start < s.end && end > s.start } else { s.contains(&start) }
        };
        mask.push(inside as u8);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_covers_tokens_that_overlap_a_span() {
        let offsets = [(0, 3), (3, 5), (5, 9), (9, 10), (10, 12)];
        assert_eq!(mask_from_spans(&offsets, &[4..9, 12..14]), vec![0, 1, 1, 0, 0]);
        assert_eq!(mask_from_spans(&offsets, &[]), vec![0; 5]);
    }
}
