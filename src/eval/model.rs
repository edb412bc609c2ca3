//! Engine-backed values. A model value is its architecture spec plus, once needed, its
//! weights: `llama(...)` stays a cheap spec (the checker folds it) until something asks
//! for logits, generation or a save, when the weights are initialised from its seed; a
//! loaded model carries its weights, tokenizer and chat template from the start.

use super::value::TokenizerValue;
use crate::engine::device::{device_name, dtype_name};
use crate::engine::llama::Llama;
use crate::engine::lora::LoraConfig;
use crate::spec::LlamaSpec;
use std::cell::RefCell;
use std::ops::Deref;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `llama(...)`: initialised from the seed when first needed.
    Built { seed: u64 },
    /// `load(...)`: a checkpoint on disk.
    Loaded { path: String, format: String },
    /// `lora(base, ...)`: an adapter on `ModelValue::base`, its A drawn from the seed
    /// when first needed (or read from a peft folder).
    Adapter { config: LoraConfig, seed: u64 },
    /// Computed from other models (`merge`, `average`): `what` says how.
    Derived { what: String },
}

pub struct ModelValue {
    pub spec: LlamaSpec,
    pub origin: Origin,
    pub device: Device,
    pub dtype: Kind,
    pub tokenizer: Option<Rc<TokenizerValue>>,
    pub chat_template: Option<String>,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// The model an adapter sits on.
    pub base: Option<Rc<ModelValue>>,
    /// Where an inherited vocabulary came from ("the tokenizer slot's bpe(1 file)"), for
    /// diagnostics; `None` when `vocab=` gave it or the checkpoint had it.
    pub vocab_from: Option<String>,
    weights: RefCell<Option<Rc<Llama>>>,
    /// The last copy made for decoding (`generate(weights="int8")`), with what it was
    /// made from, reused until the weights change.
    decode_copy: RefCell<Option<(String, u64, Rc<Llama>)>>,
}

impl Deref for ModelValue {
    type Target = LlamaSpec;
    fn deref(&self) -> &LlamaSpec {
        &self.spec
    }
}

impl PartialEq for ModelValue {
    /// Two specs that have no weights yet are equal when they describe the same model;
    /// a model with weights is equal only to itself.
    fn eq(&self, other: &ModelValue) -> bool {
        std::ptr::eq(self, other)
            || (self.spec == other.spec && self.origin == other.origin && self.weights.borrow().is_none() && other.weights.borrow().is_none())
    }
}

impl ModelValue {
    /// A spec whose weights are made from `seed` when first needed.
    pub fn built(spec: LlamaSpec, seed: u64, device: Device, dtype: Kind) -> ModelValue {
        ModelValue {
            spec,
            origin: Origin::Built { seed },
            device,
            dtype,
            tokenizer: None,
            chat_template: None,
            bos: None,
            eos: Vec::new(),
            base: None,
            vocab_from: None,
            weights: RefCell::new(None),
            decode_copy: RefCell::new(None),
        }
    }

    /// A LoRA adapter on `base`; its weights are made when first needed.
    pub fn adapter(base: Rc<ModelValue>, config: LoraConfig, seed: u64) -> ModelValue {
        let mut m = base.with_spec(base.spec.clone());
        m.origin = Origin::Adapter { config, seed };
        m.dtype = base.dtype;
        m.base = Some(base);
        m
    }

    /// A model computed from `like` and others (a merge, an average, an adapter read from
    /// disk): `like`'s tokenizer, chat template and special tokens, with these weights.
    pub fn derived(model: Llama, origin: Origin, like: &ModelValue, base: Option<Rc<ModelValue>>) -> ModelValue {
        let mut m = like.with_spec(model.spec.clone());
        m.origin = origin;
        m.dtype = model.vs.kind();
        m.device = model.device();
        m.base = base;
        *m.weights.borrow_mut() = Some(Rc::new(model));
        m
    }

    /// The adapter's configuration, for a model made by `lora(...)` or read from peft.
    pub fn lora(&self) -> Option<&LoraConfig> {
        match &self.origin {
            Origin::Adapter { config, .. } => Some(config),
            _ => None,
        }
    }

    /// A checkpoint read from `path`; its tokenizer (if it has one) is labelled with
    /// `named`, how the script referred to it.
    pub fn loaded(loaded: crate::engine::load::LoadedModel, path: String, dtype: Kind, named: &str) -> ModelValue {
        let tokenizer = loaded.tokenizer.map(|t| Rc::new(TokenizerValue { source: format!("{named} (its tokenizer)"), tokenizer: t }));
        let model = loaded.model;
        ModelValue {
            spec: model.spec.clone(),
            origin: Origin::Loaded { path, format: loaded.format },
            device: model.device(),
            dtype,
            tokenizer,
            chat_template: loaded.chat_template,
            bos: loaded.bos,
            eos: loaded.eos,
            base: None,
            vocab_from: None,
            weights: RefCell::new(Some(Rc::new(model))),
            decode_copy: RefCell::new(None),
        }
    }

    /// The same model with another spec (a vocabulary filled in); no weights yet.
    pub fn with_spec(&self, spec: LlamaSpec) -> ModelValue {
        ModelValue {
            spec,
            origin: self.origin.clone(),
            device: self.device,
            dtype: self.dtype,
            tokenizer: self.tokenizer.clone(),
            chat_template: self.chat_template.clone(),
            bos: self.bos,
            eos: self.eos.clone(),
            base: self.base.clone(),
            vocab_from: self.vocab_from.clone(),
            weights: RefCell::new(None),
            decode_copy: RefCell::new(None),
        }
    }

    /// A student sized by the teacher's or the tokenizer's vocabulary, taking that
    /// tokenizer too when it has none, so it can read and write text.
    pub fn with_vocab(&self, vocab: usize, tokenizer: Option<Rc<TokenizerValue>>) -> ModelValue {
        let mut m = self.with_spec(self.spec.with_vocab(vocab));
        if m.tokenizer.is_none() {
            m.tokenizer = tokenizer.filter(|t| t.vocab() <= vocab);
        }
        m
    }

    /// `with_vocab` from the script's vocabulary source, remembering which it was.
    pub fn with_vocab_from(&self, src: &super::VocabSource) -> ModelValue {
        let mut m = self.with_vocab(src.vocab, src.tokenizer.clone());
        m.vocab_from = Some(src.describe());
        m
    }

    /// A copy of the weights for decoding, made by `make` under `key` (the kind of copy)
    /// the first time and again only when the weights have changed since.
    pub fn decode_copy(&self, key: &str, make: impl FnOnce(&Llama) -> Result<Llama, String>) -> Result<Rc<Llama>, String> {
        let w = self.weights()?;
        let stamp = w.weights_stamp();
        if let Some((k, st, copy)) = self.decode_copy.borrow().as_ref() {
            if k == key && *st == stamp {
                return Ok(copy.clone());
            }
        }
        let copy = Rc::new(make(&w)?);
        *self.decode_copy.borrow_mut() = Some((key.to_string(), stamp, copy.clone()));
        Ok(copy)
    }

    pub fn has_weights(&self) -> bool {
        self.weights.borrow().is_some()
    }

    /// The weights, initialising a built model from its seed the first time.
    pub fn weights(&self) -> Result<Rc<Llama>, String> {
        if let Some(w) = self.weights.borrow().as_ref() {
            return Ok(w.clone());
        }
        if let (Origin::Adapter { config, seed }, Some(base)) = (&self.origin, &self.base) {
            let model = Rc::new(base.weights()?.with_lora(config, *seed)?);
            *self.weights.borrow_mut() = Some(model.clone());
            return Ok(model);
        }
        let Origin::Built { seed } = self.origin else {
            return Err("this model lost its weights".into());
        };
        if self.spec.vocab.is_none() {
            return Err("this model's vocabulary size is not known, so it has no weights yet: pass vocab= to llama(...)".into());
        }
        let mut model = Llama::new(&self.spec, self.device, None)?;
        model.init(seed);
        if self.dtype != Kind::Float {
            model.vs.set_kind(self.dtype);
        }
        let model = Rc::new(model);
        *self.weights.borrow_mut() = Some(model.clone());
        Ok(model)
    }

    /// `tokenizer.json` and `tokenizer_config.json` (special tokens, chat template) for a
    /// Hugging Face folder of this model read with `tok`, so transformers' `AutoTokenizer`
    /// and `apply_chat_template` work on it.
    pub fn tokenizer_files(&self, tok: &TokenizerValue) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
        let json = tok.tokenizer.to_string(false).map_err(|e| format!("cannot serialise the tokenizer: {e}"))?;
        let token = |id: Option<u32>| id.and_then(|i| tok.tokenizer.id_to_token(i));
        let mut config = serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false});
        if let Some(t) = token(self.bos) {
            config["bos_token"] = t.into();
        }
        if let Some(t) = token(self.eos.first().copied()) {
            config["eos_token"] = t.into();
        }
        if let Some(t) = &self.chat_template {
            config["chat_template"] = t.clone().into();
        }
        let config = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
        Ok(vec![("tokenizer.json", json.into_bytes()), ("tokenizer_config.json", config)])
    }

    /// Where the model is and in what precision: `cpu f32`.
    pub fn placement(&self) -> String {
        format!("{} {}", device_name(self.device), dtype_name(self.dtype))
    }

    pub fn one_line(&self) -> String {
        match &self.origin {
            Origin::Loaded { path, .. } => format!("{} from {path}", self.spec.one_line()),
            Origin::Built { .. } => self.spec.one_line(),
            Origin::Adapter { config, .. } => format!("lora({}) on {}", config.describe(), self.spec.one_line()),
            Origin::Derived { what } => format!("{} ({what})", self.spec.one_line()),
        }
    }

    /// What `print model` shows: the architecture, then where the weights come from.
    pub fn describe(&self) -> String {
        let mut out = self.spec.describe();
        let source = match &self.origin {
            Origin::Loaded { path, format } => format!("{path} ({format})"),
            Origin::Built { seed } if self.has_weights() => format!("initialised from seed {seed}"),
            Origin::Built { seed } => format!("not initialised yet (seed {seed})"),
            Origin::Adapter { config, .. } => format!(
                "frozen base + LoRA adapter ({}), {} trainable params",
                config.describe(),
                crate::spec::fmt_count(config.params(&self.spec))
            ),
            Origin::Derived { what } => what.clone(),
        };
        out.push_str(&format!("\n  {:<10} {source}\n  {:<10} {}", "weights", "device", self.placement()));
        if let Some(t) = &self.tokenizer {
            out.push_str(&format!("\n  {:<10} {} entries", "tokenizer", t.vocab()));
        }
        out
    }
}

/// A tensor result (`logits(...)`), kept on its device until printed or saved.
pub struct TensorValue {
    pub tensor: Tensor,
    /// What it holds, for messages: "logits".
    pub what: &'static str,
}

impl TensorValue {
    pub fn shape(&self) -> Vec<i64> {
        self.tensor.size()
    }

    /// `tensor [1, 5, 49152] f32 cpu · min -12.1 · max 21.3 · mean -2.02`
    pub fn describe(&self) -> String {
        let t = self.tensor.to_kind(Kind::Float);
        let stats = if t.numel() == 0 {
            String::new()
        } else {
            let v = |x: Tensor| x.double_value(&[]);
            format!(" · min {:.4} · max {:.4} · mean {:.4}", v(t.min()), v(t.max()), v(t.mean(Kind::Float)))
        };
        format!("tensor {:?} {} {}{stats}", self.shape(), dtype_name(self.tensor.kind()), device_name(self.tensor.device()))
    }
}
