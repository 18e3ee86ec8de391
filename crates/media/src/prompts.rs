//! Prompts: the recorded words and phrases Switchboard plays, loaded into memory once.
//!
//! A language's prompts are WAV files in `<dir>/<language>/<category>/<name>.wav`, the prompt
//! `category/name` (`prompts/en/digits/7.wav` is `digits/7` in English). The generated set,
//! committed in the repository's `prompts/` and rendered by `scripts/make-prompts`, is the
//! base; an operator's override directory, laid out the same way, replaces any of them with
//! their own recording and may add prompts of their own. Every file must be 8000 Hz, mono,
//! 16-bit PCM: anything else is an error naming the file, at load, not a surprise on a
//! call. Samples stay 16-bit linear here; the codec turns them into what a call needs.
//!
//! Reading files is the only I/O in this crate, and it happens at load (start-up, reload),
//! never while calls are served.

use crate::wav::WavError;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The sample rate every prompt has (narrowband telephony: G.711).
pub const SAMPLE_RATE: u32 = crate::wav::SAMPLE_RATE;

/// Largest prompt file read: 10 MiB, about 11 minutes at 8 kHz, 16-bit.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Most prompts one language may hold, generated and the operator's together.
pub const MAX_PROMPTS: usize = 4096;

/// Longest category or prompt name (the file name without `.wav`).
pub const MAX_NAME: usize = 64;

/// One prompt: its audio as 16-bit linear samples at [`SAMPLE_RATE`], and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    samples: Arc<[i16]>,
    path: PathBuf,
    origin: Origin,
}

impl Prompt {
    /// The audio, 8000 samples a second.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The audio, shared (sessions playing the same prompt share one copy).
    pub fn shared_samples(&self) -> Arc<[i16]> {
        Arc::clone(&self.samples)
    }

    /// How long the prompt plays.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is the generated prompt or the operator's.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// Where a loaded prompt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The generated set (`prompts/` in the repository).
    Generated,
    /// The operator's override directory: their recording replaced a generated prompt.
    Replaced,
    /// The operator's override directory: a prompt the generated set does not have.
    Added,
}

/// A language's prompts, in memory, by name.
#[derive(Clone, Debug)]
pub struct Prompts {
    language: String,
    prompts: BTreeMap<String, Prompt>,
}

impl Prompts {
    /// Loads the prompts of `language` from `generated/<language>/` and then from
    /// `overrides/<language>/`, whose files replace the generated ones of the same name and
    /// add those the generated set lacks. The generated directory must exist; the override
    /// one need not (nothing is replaced). Files not ending in `.wav` and names starting with
    /// `.` are skipped (the generated set holds its `prompts.txt`); every `.wav` file must be
    /// a valid prompt, or the whole load fails with an error naming it.
    pub fn load(
        generated: &Path,
        overrides: Option<&Path>,
        language: &str,
    ) -> Result<Prompts, PromptError> {
        Prompts::load_at_most(generated, overrides, language, MAX_PROMPTS)
    }

    /// Loads the prompts of `language` from `embedded` — (`category/name`, WAV file) pairs,
    /// e.g. compiled into the binary, so that a daemon works with no prompt files on disk —
    /// and then from `overrides/<language>/` as [`Prompts::load`] does. An embedded prompt's
    /// path (in errors) is `<embedded>/<language>/<category>/<name>.wav`.
    pub fn load_embedded(
        embedded: &[(&str, &[u8])],
        overrides: Option<&Path>,
        language: &str,
    ) -> Result<Prompts, PromptError> {
        check_name(language, false).map_err(|why| PromptError::Language {
            language: language.to_owned(),
            why,
        })?;
        if embedded.len() > MAX_PROMPTS {
            return Err(PromptError::TooMany {
                dir: PathBuf::from("<embedded>").join(language),
            });
        }
        let mut prompts = BTreeMap::new();
        for (name, bytes) in embedded {
            let path = PathBuf::from("<embedded>")
                .join(language)
                .join(format!("{name}.wav"));
            let valid = name.split_once('/').is_some_and(|(category, stem)| {
                check_name(category, false).is_ok() && check_name(stem, true).is_ok()
            });
            if !valid {
                return Err(PromptError::Name {
                    path,
                    why: "an embedded prompt is named category/name",
                });
            }
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(PromptError::TooLarge { path });
            }
            let samples = read_wav_bytes(bytes, &path)?;
            let origin = Origin::Generated;
            prompts.insert(
                name.to_string(),
                Prompt {
                    samples,
                    path,
                    origin,
                },
            );
        }
        if let Some(overrides) = overrides {
            let dir = overrides.join(language);
            if dir.is_dir() {
                load_dir(&dir, Origin::Added, &mut prompts, MAX_PROMPTS)?;
            } else if dir.exists() {
                return Err(PromptError::Io {
                    path: dir,
                    source: std::io::Error::other("not a directory"),
                });
            }
        }
        Ok(Prompts {
            language: language.to_owned(),
            prompts,
        })
    }

    /// [`Prompts::load`] with another bound than [`MAX_PROMPTS`] (tests).
    fn load_at_most(
        generated: &Path,
        overrides: Option<&Path>,
        language: &str,
        limit: usize,
    ) -> Result<Prompts, PromptError> {
        check_name(language, false).map_err(|why| PromptError::Language {
            language: language.to_owned(),
            why,
        })?;
        let base = generated.join(language);
        if !base.is_dir() {
            return Err(PromptError::NoLanguage {
                language: language.to_owned(),
                dir: generated.to_owned(),
            });
        }
        let mut prompts = BTreeMap::new();
        load_dir(&base, Origin::Generated, &mut prompts, limit)?;
        if let Some(overrides) = overrides {
            let dir = overrides.join(language);
            if dir.is_dir() {
                load_dir(&dir, Origin::Added, &mut prompts, limit)?;
            } else if dir.exists() {
                return Err(PromptError::Io {
                    path: dir,
                    source: std::io::Error::other("not a directory"),
                });
            }
        }
        Ok(Prompts {
            language: language.to_owned(),
            prompts,
        })
    }

    /// The language's directory name (`en`).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The prompt `category/name`, if loaded.
    pub fn get(&self, name: &str) -> Option<&Prompt> {
        self.prompts.get(name)
    }

    /// The prompts of a phrase, in order; an error names the first one missing.
    pub fn phrase<'a>(&'a self, names: &[&str]) -> Result<Vec<&'a Prompt>, PromptError> {
        names
            .iter()
            .map(|name| {
                self.get(name).ok_or_else(|| PromptError::Missing {
                    language: self.language.clone(),
                    names: vec![(*name).to_owned()],
                })
            })
            .collect()
    }

    /// Checks that every name given is loaded (a language's vocabulary, the phrases the
    /// daemon uses), so a missing file is found at load rather than on a call. The error
    /// lists every missing name.
    pub fn require<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<(), PromptError> {
        let missing: Vec<String> = names
            .into_iter()
            .filter(|name| !self.prompts.contains_key(*name))
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(PromptError::Missing {
                language: self.language.clone(),
                names: missing,
            })
        }
    }

    /// Every prompt, by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Prompt)> {
        self.prompts
            .iter()
            .map(|(name, prompt)| (name.as_str(), prompt))
    }

    /// How many prompts are loaded.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether none are (a language directory with no WAV files).
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

/// Reads every `<dir>/<category>/<name>.wav` into `prompts`. With `origin` other than
/// [`Origin::Generated`], a name already present is [`Origin::Replaced`]. The files are
/// listed and counted before any is read.
fn load_dir(
    dir: &Path,
    origin: Origin,
    prompts: &mut BTreeMap<String, Prompt>,
    limit: usize,
) -> Result<(), PromptError> {
    let files = list_dir(dir, limit)?;
    let added = files
        .iter()
        .filter(|(name, _)| !prompts.contains_key(name))
        .count();
    if prompts.len() + added > limit {
        return Err(PromptError::TooMany {
            dir: dir.to_owned(),
        });
    }
    for (name, path) in files {
        let origin = match origin {
            Origin::Generated => Origin::Generated,
            _ if prompts.contains_key(&name) => Origin::Replaced,
            _ => Origin::Added,
        };
        let samples = read_wav(&path)?;
        prompts.insert(
            name,
            Prompt {
                samples,
                path,
                origin,
            },
        );
    }
    Ok(())
}

/// The prompt files of a language directory: (`category/name`, path), in name order.
fn list_dir(dir: &Path, limit: usize) -> Result<Vec<(String, PathBuf)>, PromptError> {
    let mut files = Vec::new();
    for category in sorted_entries(dir)? {
        let Some(category_name) = visible_name(&category) else {
            continue;
        };
        if !category.is_dir() {
            continue;
        }
        check_name(&category_name, false).map_err(|why| PromptError::Name {
            path: category.clone(),
            why,
        })?;
        for file in sorted_entries(&category)? {
            let Some(file_name) = visible_name(&file) else {
                continue;
            };
            let Some(stem) = file_name
                .len()
                .checked_sub(4)
                .filter(|&n| file_name.is_char_boundary(n))
                .filter(|&n| file_name[n..].eq_ignore_ascii_case(".wav"))
                .map(|n| &file_name[..n])
            else {
                continue;
            };
            if file.is_dir() {
                continue;
            }
            check_name(stem, true).map_err(|why| PromptError::Name {
                path: file.clone(),
                why,
            })?;
            files.push((format!("{category_name}/{stem}"), file));
            // Bounded here too: a directory of a million files is not listed in full.
            if files.len() > limit {
                return Err(PromptError::TooMany {
                    dir: dir.to_owned(),
                });
            }
        }
    }
    Ok(files)
}

/// The entries of a directory, sorted by name (errors and logs come out the same each run).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, PromptError> {
    let io = |source| PromptError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

/// The file name of `path`, unless it is hidden (starts with `.`). A name that is not
/// UTF-8 is kept lossily, so that the name check reports it.
fn visible_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    (!name.starts_with('.')).then_some(name)
}

/// A category, prompt or language name: lowercase ASCII letters, digits and `_` (a prompt
/// name also `-`), starting with a letter or digit, at most [`MAX_NAME`] long. Prompt names
/// are looked up from code and the policy, so they are kept plain.
fn check_name(name: &str, dash: bool) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("names are 1 to 64 characters");
    }
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.starts_with(plain)
        || !name
            .chars()
            .all(|c| plain(c) || c == '_' || (dash && c == '-'))
    {
        return Err(if dash {
            "prompt names are lowercase letters, digits, '_' and '-', starting with a letter or digit"
        } else {
            "names are lowercase letters, digits and '_', starting with a letter or digit"
        });
    }
    Ok(())
}

/// Reads one prompt file: at most [`MAX_FILE_BYTES`], 8000 Hz mono 16-bit PCM.
fn read_wav(path: &Path) -> Result<Arc<[i16]>, PromptError> {
    let io = |source| PromptError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(PromptError::TooLarge {
            path: path.to_owned(),
        });
    }
    read_wav_bytes(&bytes, path)
}

/// Reads one prompt from the bytes of its WAV file (`path` names it in errors).
fn read_wav_bytes(bytes: &[u8], path: &Path) -> Result<Arc<[i16]>, PromptError> {
    // The file's size bounds it already (MAX_FILE_BYTES).
    match crate::wav::decode(bytes, usize::MAX) {
        Ok(samples) => Ok(samples.into()),
        Err(WavError::Unreadable(source)) => Err(PromptError::Wav {
            path: path.to_owned(),
            source,
        }),
        Err(WavError::Format(found)) => Err(PromptError::Format {
            path: path.to_owned(),
            found,
        }),
        Err(WavError::TooLong { .. }) => Err(PromptError::TooLarge {
            path: path.to_owned(),
        }),
    }
}

/// A prompt set that could not be loaded, or a prompt that is not there.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The language name is not a plain directory name.
    #[error("language {language:?}: {why}")]
    Language { language: String, why: &'static str },
    /// No `<dir>/<language>/` directory.
    #[error("no prompts for language {language:?} in {} (a directory {language}/ is expected there)", dir.display())]
    NoLanguage { language: String, dir: PathBuf },
    /// A directory or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A category directory or WAV file whose name is not a prompt name.
    #[error("{}: {why}", path.display())]
    Name { path: PathBuf, why: &'static str },
    /// A file larger than [`MAX_FILE_BYTES`].
    #[error("{}: larger than {MAX_FILE_BYTES} bytes (about 11 minutes of 8 kHz audio)", path.display())]
    TooLarge { path: PathBuf },
    /// More than [`MAX_PROMPTS`] prompts in one language.
    #[error("{}: more than {MAX_PROMPTS} prompts in one language", dir.display())]
    TooMany { dir: PathBuf },
    /// A file that is not a PCM WAV file hound can read (µ-law WAV, MP3, truncated…).
    #[error("{}: not a PCM WAV file ({source}); prompts are 8000 Hz, mono, 16-bit PCM WAV: \
             sox IN -r 8000 -c 1 -b 16 -e signed-integer OUT.wav converts one", path.display())]
    Wav { path: PathBuf, source: hound::Error },
    /// A WAV file of another rate, channel count or sample format.
    #[error("{}: {found}; prompts are 8000 Hz, mono, 16-bit PCM WAV: \
             sox IN -r 8000 -c 1 -b 16 -e signed-integer OUT.wav converts one", path.display())]
    Format { path: PathBuf, found: String },
    /// Prompts a phrase or a language needs that the set lacks.
    #[error("language {language:?} has no prompt {}", names.join(", "))]
    Missing {
        language: String,
        names: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::say::{phrase, LANGUAGES};

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts")
    }

    /// Writes a WAV file of the given format with `samples` (repeated per channel).
    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i16]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            for _ in 0..channels {
                match bits {
                    8 => writer.write_sample((s >> 8) as i8).unwrap(),
                    16 => writer.write_sample(s).unwrap(),
                    _ => writer.write_sample(i32::from(s) << (bits - 16)).unwrap(),
                }
            }
        }
        writer.finalize().unwrap();
    }

    fn good(path: &Path, samples: &[i16]) {
        write_wav(path, 8000, 1, 16, samples);
    }

    /// A generated set with two prompts, and an empty override directory.
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let generated = tmp.path().join("prompts");
        let overrides = tmp.path().join("local");
        good(&generated.join("en/digits/1.wav"), &[1, 2, 3]);
        good(&generated.join("en/phrases/goodbye.wav"), &[4; 8000]);
        fs::write(generated.join("en/prompts.txt"), "digits/1 one\n").unwrap();
        fs::create_dir_all(&overrides).unwrap();
        (tmp, generated, overrides)
    }

    #[test]
    fn the_committed_prompts_load_and_hold_every_language_needs() {
        for language in LANGUAGES {
            let prompts = Prompts::load(&committed(), None, language.code()).unwrap();
            assert_eq!(prompts.language(), language.code());
            prompts
                .require(language.vocabulary().iter().copied())
                .unwrap();
            prompts.require(phrase::ALL.iter().copied()).unwrap();
            let manifest =
                fs::read_to_string(committed().join(language.code()).join("prompts.txt")).unwrap();
            let lines = manifest
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@'))
                .count();
            assert_eq!(prompts.len(), lines, "one WAV file per line of prompts.txt");
            for (name, prompt) in prompts.iter() {
                assert_eq!(prompt.origin(), Origin::Generated);
                assert!(!prompt.samples().is_empty(), "{name} is silent");
                assert!(prompt.duration() < Duration::from_secs(5), "{name}");
            }
            let tone = prompts.get(phrase::BEEP).unwrap();
            assert_eq!(tone.duration(), Duration::from_millis(400));
        }
    }

    #[test]
    fn prompts_load_by_category_and_name() {
        let (_tmp, generated, _) = fixture();
        let prompts = Prompts::load(&generated, None, "en").unwrap();
        assert_eq!(prompts.len(), 2);
        let one = prompts.get("digits/1").unwrap();
        assert_eq!(one.samples(), [1, 2, 3]);
        assert_eq!(one.path(), generated.join("en/digits/1.wav"));
        assert_eq!(one.origin(), Origin::Generated);
        assert_eq!(
            prompts.get("phrases/goodbye").unwrap().duration(),
            Duration::from_secs(1)
        );
        assert!(prompts.get("digits/2").is_none());
        let names: Vec<_> = prompts.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["digits/1", "phrases/goodbye"]);
        let phrase = prompts
            .phrase(&["digits/1", "phrases/goodbye", "digits/1"])
            .unwrap();
        assert_eq!(phrase.len(), 3);
        assert_eq!(phrase[1].samples().len(), 8000);
        assert!(Arc::ptr_eq(
            &phrase[0].shared_samples(),
            &phrase[2].shared_samples()
        ));
    }

    #[test]
    fn an_operator_recording_replaces_a_prompt_or_adds_one() {
        let (_tmp, generated, overrides) = fixture();
        good(&overrides.join("en/phrases/goodbye.wav"), &[9, 9]);
        good(&overrides.join("en/names/alice.wav"), &[7]);
        // Another language's overrides are not this one's.
        good(&overrides.join("fr/digits/1.wav"), &[5]);
        let prompts = Prompts::load(&generated, Some(&overrides), "en").unwrap();
        let goodbye = prompts.get("phrases/goodbye").unwrap();
        assert_eq!(goodbye.samples(), [9, 9]);
        assert_eq!(goodbye.origin(), Origin::Replaced);
        assert_eq!(goodbye.path(), overrides.join("en/phrases/goodbye.wav"));
        let alice = prompts.get("names/alice").unwrap();
        assert_eq!(alice.origin(), Origin::Added);
        assert_eq!(prompts.get("digits/1").unwrap().samples(), [1, 2, 3]);
        assert_eq!(prompts.len(), 3);
    }

    #[test]
    fn an_override_directory_without_the_language_changes_nothing() {
        let (_tmp, generated, overrides) = fixture();
        let prompts = Prompts::load(&generated, Some(&overrides), "en").unwrap();
        assert_eq!(prompts.len(), 2);
        let missing = overrides.join("nowhere");
        assert_eq!(
            Prompts::load(&generated, Some(&missing), "en")
                .unwrap()
                .len(),
            2
        );
        fs::write(overrides.join("en"), "a file").unwrap();
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    /// Loads with one override file and returns the error's text.
    fn override_error(write: impl FnOnce(&Path)) -> String {
        let (_tmp, generated, overrides) = fixture();
        fs::create_dir_all(overrides.join("en/phrases")).unwrap();
        write(&overrides.join("en/phrases/goodbye.wav"));
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                &overrides
                    .join("en/phrases/goodbye.wav")
                    .display()
                    .to_string()
            ),
            "the error names the file: {text}"
        );
        text
    }

    #[test]
    fn a_wrong_format_is_an_error_naming_the_file() {
        let text = override_error(|p| write_wav(p, 44_100, 1, 16, &[0; 10]));
        assert!(
            text.contains("44100 Hz, 1 channel, 16-bit PCM; prompts are 8000 Hz"),
            "{text}"
        );
        assert!(text.contains("sox IN -r 8000 -c 1 -b 16"), "{text}");
        let text = override_error(|p| write_wav(p, 8000, 2, 16, &[0; 10]));
        assert!(text.contains("8000 Hz, 2 channels, 16-bit PCM"), "{text}");
        let text = override_error(|p| write_wav(p, 8000, 1, 8, &[0; 10]));
        assert!(text.contains("8-bit PCM"), "{text}");
        let text = override_error(|p| write_wav(p, 8000, 1, 24, &[0; 10]));
        assert!(text.contains("24-bit PCM"), "{text}");
        let text = override_error(|p| {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut w = hound::WavWriter::create(p, spec).unwrap();
            w.write_sample(0.5f32).unwrap();
            w.finalize().unwrap();
        });
        assert!(text.contains("32-bit floating point"), "{text}");
    }

    #[test]
    fn a_file_that_is_not_pcm_wav_is_an_error_naming_the_file() {
        let text = override_error(|p| fs::write(p, b"ID3\x03\x00 an mp3").unwrap());
        assert!(text.contains("not a PCM WAV file"), "{text}");
        // G.711 µ-law in a WAV (format 7): hound reads PCM only.
        let text = override_error(|p| {
            let mut f = Vec::new();
            f.extend_from_slice(b"RIFF");
            f.extend_from_slice(&(4u32 + 8 + 18 + 8 + 4).to_le_bytes());
            f.extend_from_slice(b"WAVEfmt ");
            f.extend_from_slice(&18u32.to_le_bytes());
            f.extend_from_slice(&7u16.to_le_bytes()); // µ-law
            f.extend_from_slice(&1u16.to_le_bytes());
            f.extend_from_slice(&8000u32.to_le_bytes());
            f.extend_from_slice(&8000u32.to_le_bytes());
            f.extend_from_slice(&1u16.to_le_bytes());
            f.extend_from_slice(&8u16.to_le_bytes());
            f.extend_from_slice(&0u16.to_le_bytes());
            f.extend_from_slice(b"data");
            f.extend_from_slice(&4u32.to_le_bytes());
            f.extend_from_slice(&[0xff; 4]);
            fs::write(p, f).unwrap();
        });
        assert!(text.contains("not a PCM WAV file"), "{text}");
        // Truncated: the header promises more samples than the file has.
        let text = override_error(|p| {
            good(p, &[1; 100]);
            let bytes = fs::read(p).unwrap();
            fs::write(p, &bytes[..bytes.len() - 51]).unwrap();
        });
        assert!(text.contains("not a PCM WAV file"), "{text}");
        let text = override_error(|p| fs::write(p, b"").unwrap());
        assert!(text.contains("not a PCM WAV file"), "{text}");
    }

    #[test]
    fn a_file_too_large_is_refused_before_it_is_parsed() {
        let text = override_error(|p| {
            let f = fs::File::create(p).unwrap();
            f.set_len(MAX_FILE_BYTES + 1).unwrap();
        });
        assert!(text.contains("larger than 10485760 bytes"), "{text}");
    }

    #[test]
    fn a_header_claiming_more_samples_than_the_file_holds_is_refused() {
        let text = override_error(|p| {
            good(p, &[1; 10]);
            let mut bytes = fs::read(p).unwrap();
            // The data chunk's length, at byte 40 of the plain 44-byte header.
            bytes[40..44].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
            fs::write(p, bytes).unwrap();
        });
        assert!(text.contains("not a PCM WAV file"), "{text}");
    }

    #[test]
    fn names_must_be_plain() {
        let (_tmp, generated, overrides) = fixture();
        good(&overrides.join("en/phrases/Goodbye.wav"), &[1]);
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        assert!(matches!(err, PromptError::Name { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("Goodbye.wav: prompt names are lowercase"),
            "{err}"
        );

        let (_tmp, generated, overrides) = fixture();
        good(&overrides.join("en/My Phrases/hello.wav"), &[1]);
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        assert!(
            err.to_string().contains("My Phrases: names are lowercase"),
            "{err}"
        );

        for language in ["", "../en", "EN", "en/..", ".", "e n"] {
            let err = Prompts::load(&generated, None, language).unwrap_err();
            assert!(
                matches!(err, PromptError::Language { .. }),
                "{language:?}: {err}"
            );
        }
        assert!(check_name(&"a".repeat(MAX_NAME), true).is_ok());
        assert!(check_name(&"a".repeat(MAX_NAME + 1), true).is_err());
        assert!(check_name("press-1", true).is_ok());
        assert!(check_name("press-1", false).is_err());
        assert!(check_name("_x", true).is_err());
    }

    #[test]
    fn other_files_and_hidden_ones_are_skipped() {
        let (_tmp, generated, overrides) = fixture();
        fs::write(overrides.join("README"), "notes").unwrap();
        fs::create_dir_all(overrides.join("en/phrases")).unwrap();
        fs::write(overrides.join("en/phrases/goodbye.txt"), "the words").unwrap();
        fs::write(overrides.join("en/phrases/.goodbye.wav.swp"), "editor").unwrap();
        fs::write(overrides.join("en/phrases/.hidden.wav"), "not a wav").unwrap();
        fs::create_dir_all(overrides.join("en/.git")).unwrap();
        fs::write(overrides.join("en/.git/x.wav"), "not a wav").unwrap();
        fs::create_dir_all(overrides.join("en/phrases/deeper")).unwrap();
        good(&overrides.join("en/phrases/deeper/x.wav"), &[1]);
        // An upper-case extension is still a WAV file.
        good(&overrides.join("en/phrases/hello.WAV"), &[1]);
        let prompts = Prompts::load(&generated, Some(&overrides), "en").unwrap();
        assert_eq!(prompts.len(), 3);
        assert_eq!(
            prompts.get("phrases/hello").unwrap().origin(),
            Origin::Added
        );
    }

    #[test]
    fn a_missing_language_or_prompt_is_an_error_that_says_which() {
        let (_tmp, generated, _) = fixture();
        let err = Prompts::load(&generated, None, "fr").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no prompts for language \"fr\" in"),
            "{err}"
        );
        let prompts = Prompts::load(&generated, None, "en").unwrap();
        let err = prompts.phrase(&["digits/1", "digits/2"]).unwrap_err();
        assert_eq!(err.to_string(), "language \"en\" has no prompt digits/2");
        let err = prompts
            .require(["digits/1", "digits/2", "time/noon"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "language \"en\" has no prompt digits/2, time/noon"
        );
        prompts.require(["digits/1"]).unwrap();
    }

    #[test]
    fn too_many_prompts_are_refused_before_any_is_read() {
        let (_tmp, generated, overrides) = fixture();
        // The bound counts the generated set and the additions together; the files are
        // links to one that is not even a WAV file: nothing is read once the count is over.
        let dir = overrides.join("en/extra");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("0.wav"), "not read").unwrap();
        for i in 1..=(MAX_PROMPTS - 2) {
            fs::hard_link(dir.join("0.wav"), dir.join(format!("{i}.wav"))).unwrap();
        }
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        assert!(matches!(err, PromptError::TooMany { .. }), "{err}");
        assert!(err.to_string().contains("more than 4096 prompts"), "{err}");
        // One fewer is within the bound (and fails on reading the file instead).
        fs::remove_file(dir.join("1.wav")).unwrap();
        let err = Prompts::load(&generated, Some(&overrides), "en").unwrap_err();
        assert!(matches!(err, PromptError::Wav { .. }), "{err}");
    }

    #[test]
    fn the_bound_counts_additions_not_replacements() {
        let (_tmp, generated, overrides) = fixture();
        good(&overrides.join("en/digits/1.wav"), &[1]);
        good(&overrides.join("en/phrases/goodbye.wav"), &[1]);
        assert_eq!(
            Prompts::load_at_most(&generated, Some(&overrides), "en", 2)
                .unwrap()
                .len(),
            2
        );
        good(&overrides.join("en/digits/2.wav"), &[1]);
        let err = Prompts::load_at_most(&generated, Some(&overrides), "en", 2).unwrap_err();
        assert!(matches!(err, PromptError::TooMany { .. }), "{err}");
        assert_eq!(
            Prompts::load_at_most(&generated, Some(&overrides), "en", 3)
                .unwrap()
                .len(),
            3
        );
        let err = Prompts::load_at_most(&generated, None, "en", 1).unwrap_err();
        assert!(matches!(err, PromptError::TooMany { .. }), "{err}");
    }
}
