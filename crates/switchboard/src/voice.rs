//! The daemon's voice, shell side: the prompts compiled into the binary (the generated
//! set of `prompts/`, embedded by `build.rs`, so that a daemon on a fresh machine speaks),
//! the operator's recordings over them (`[media] prompts`), encoded once, at start, to
//! both G.711 laws for the core's [`Library`] (and their names, which the policy's
//! messages must be among: `policy_source`).

use crate::core::Library;
use std::path::Path;
use switchboard_media::prompts::Prompts;

/// One embedded prompt: its name (`category/name`) and its WAV file.
pub type EmbeddedPrompt = (&'static str, &'static [u8]);

include!(concat!(env!("OUT_DIR"), "/prompts.rs"));

/// The prompts of `language`: the embedded set, with the operator's from `overrides`
/// (`<overrides>/<language>/<category>/<name>.wav`) in place of or beside them; every
/// prompt the language's phrases need must be there.
pub fn load_prompts(language: &str, overrides: Option<&Path>) -> Result<Prompts, String> {
    let lang = switchboard_media::say::language(language)
        .ok_or_else(|| format!("no prompts in language {language:?}"))?;
    let embedded = EMBEDDED_PROMPTS
        .iter()
        .find(|(code, _)| *code == language)
        .map(|(_, files)| *files)
        .unwrap_or_default();
    let prompts =
        Prompts::load_embedded(embedded, overrides, language).map_err(|e| e.to_string())?;
    let needed = lang
        .vocabulary()
        .iter()
        .chain(switchboard_media::say::phrase::ALL)
        .chain(switchboard_media::say::phrase::TIME_WORDS);
    prompts
        .require(needed.copied())
        .map_err(|e| e.to_string())?;
    Ok(prompts)
}

/// The core's library of `prompts`, in `language`.
pub fn library(prompts: &Prompts, language: &str) -> Library {
    let lang =
        switchboard_media::say::language(language).unwrap_or(&switchboard_media::say::ENGLISH);
    Library::from_prompts(prompts, lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_english_prompts_load_and_say_every_phrase() {
        let prompts = load_prompts("en", None).unwrap();
        assert!(prompts.len() >= 140, "{}", prompts.len());
        let lib = library(&prompts, "en");
        assert!(lib.resolve("is_in_a_meeting").is_some());
        assert_eq!(lib.resolve("phrases/until"), Some("phrases/until"));
        assert!(lib.resolve("no_such_message").is_none());
        // The same audio as the files in the repository.
        let file = Prompts::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts"),
            None,
            "en",
        )
        .unwrap();
        assert_eq!(
            file.get("digits/7").unwrap().samples(),
            prompts.get("digits/7").unwrap().samples()
        );
    }

    #[test]
    fn an_operators_recording_is_added_and_found_by_its_message_name() {
        let dir = tempfile::tempdir().unwrap();
        let messages = dir.path().join("en/messages");
        std::fs::create_dir_all(&messages).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(messages.join("welcome.wav"), spec).unwrap();
        for s in [0i16, 100, -100] {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let prompts = load_prompts("en", Some(dir.path())).unwrap();
        let lib = library(&prompts, "en");
        assert_eq!(lib.resolve("welcome"), Some("messages/welcome"));
    }
}
