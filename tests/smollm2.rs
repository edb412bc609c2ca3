//! The real teacher: SmolLM2-135M-Instruct loaded by kdl from its Q4_1 GGUF matches
//! transformers loading the same GGUF (tests/fixtures/smollm2_reference.py, run by
//! ./setup.sh into KDL_FIXTURES_SMOLLM2): next-token logits within 1e-3, the same 32
//! greedy tokens, the same tokenizer ids on mixed-script text, the same chat prompt.

use kdl::engine::chat::{render, Message};
use kdl::engine::generate::{generate, Sampling};
use kdl::engine::load::{load_model, LoadedModel};
use kdl::eval::Value;
use kdl::Session;
use serde_json::Value as Json;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-3;

fn env_path(var: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| panic!("{var} is unset: run ./setup.sh (it fetches the teacher and makes the fixtures)"));
    assert!(p.exists(), "{} is missing: run ./setup.sh", p.display());
    p
}

fn fixtures() -> (Json, Vec<(String, Tensor)>) {
    let dir = env_path("KDL_FIXTURES_SMOLLM2");
    let json: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let tensors = Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap();
    (json, tensors)
}

fn tensor(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).unwrap_or_else(|| panic!("fixture has no {name}"))
}

fn teacher() -> LoadedModel {
    load_model(&env_path("KDL_SMOLLM2"), Device::Cpu, Kind::Float).unwrap()
}

fn u32s(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn gguf_logits_match_transformers() {
    let (json, tensors) = fixtures();
    let t = teacher();
    let full = json["full_logits_prompt"].as_u64().unwrap() as usize;
    for (i, prompt) in json["prompts"].as_array().unwrap().iter().enumerate() {
        let ids = tensor(&tensors, &format!("prompt.{i}.ids")).unsqueeze(0);
        let logits = tch::no_grad(|| t.model.forward(&ids, None)).squeeze_dim(0);
        let last = logits.select(0, -1);
        let d = (&last - tensor(&tensors, &format!("prompt.{i}.last_logits"))).abs().max().double_value(&[]);
        assert!(d <= TOLERANCE, "prompt {:?}: max |Δlogit| = {d:e}", prompt["name"]);
        assert_eq!(last.argmax(0, false).int64_value(&[]) as u64, prompt["argmax"].as_u64().unwrap());
        if i == full {
            let d = (&logits - tensor(&tensors, &format!("prompt.{i}.logits"))).abs().max().double_value(&[]);
            assert!(d <= TOLERANCE, "every position of prompt {i}: max |Δlogit| = {d:e}");
        }
    }
}

#[test]
fn greedy_tokens_match_transformers() {
    let (json, _) = fixtures();
    let t = teacher();
    for case in json["greedy"].as_array().unwrap() {
        let prompt = u32s(&case["prompt_ids"]);
        let want = u32s(&case["new_ids"]);
        // No stop token: transformers' 32 tokens are a pure argmax chain.
        let (got, _) = generate(&t.model, &prompt, want.len(), &Sampling::greedy(), &[], |_| true).unwrap();
        assert_eq!(got, want, "greedy continuation of {:?}", case["name"]);
    }
}

#[test]
fn gguf_tokenizer_matches_transformers_on_mixed_scripts() {
    let (json, _) = fixtures();
    let t = teacher();
    let tok = t.tokenizer.expect("the GGUF carries a tokenizer");
    for case in json["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids, u32s(&case["ids"]), "ids of {:?}", case["name"]);
        assert_eq!(tok.decode(&ids, false).unwrap(), case["decoded"].as_str().unwrap(), "decoding {:?}", case["name"]);
    }
}

#[test]
fn gguf_chat_template_renders_like_transformers() {
    let (json, _) = fixtures();
    let t = teacher();
    let template = t.chat_template.expect("the GGUF carries a chat template");
    assert_eq!(template, json["chat_template"].as_str().unwrap());
    let tok = t.tokenizer.unwrap();
    for case in json["chat"].as_array().unwrap() {
        let messages: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message { role: m[0].as_str().unwrap().into(), content: m[1].as_str().unwrap().into() })
            .collect();
        let text = render(&template, &messages, case["add_generation_prompt"].as_bool().unwrap(), "", "").unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "chat {:?}", case["name"]);
        assert_eq!(tok.encode(text.as_str(), false).unwrap().get_ids(), u32s(&case["ids"]).as_slice());
    }
}

#[test]
fn chat_from_a_script_answers_like_transformers() {
    let (json, _) = fixtures();
    let chat = json["greedy"].as_array().unwrap().iter().find(|g| g["name"] == "chat").unwrap();
    let question = chat["messages"][0][1].as_str().unwrap();
    let mut s = Session::capture();
    let reply = s.eval_str(&format!("teacher load(\"smollm2\")\nchat(teacher, {question:?}, temp=0)")).unwrap();
    let Some(Value::Str(reply)) = reply else { panic!("chat returns text") };
    assert_eq!(&*reply, chat["text"].as_str().unwrap());
    // Streamed as it was generated, after the load banner.
    assert!(s.take_output().ends_with(&format!("{reply}\n")));
}
