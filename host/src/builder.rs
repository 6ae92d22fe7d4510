//! `hero-host build`: runs each component's `[component.<id>.build] command`,
//! as `spin build` does, after making sure the `wasm32-wasip2` target is
//! installed when a command needs it.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::manifest::Manifest;

/// Runs every build command of the manifest, in component order. The
/// commands' output goes to stderr, so stdout keeps only log lines.
pub fn build(manifest: &Manifest) -> anyhow::Result<()> {
    let commands: Vec<(&str, &crate::manifest::BuildConfig)> = manifest
        .components
        .values()
        .filter_map(|c| c.build.as_ref().map(|b| (c.id.as_str(), b)))
        .collect();
    if commands.is_empty() {
        tracing::info!("no component has a build command");
        return Ok(());
    }
    if commands
        .iter()
        .any(|(_, b)| b.commands.iter().any(|c| c.contains("wasm32-wasip2")))
    {
        ensure_wasm_target()?;
    }
    for (component, build) in commands {
        for command in &build.commands {
            tracing::info!(component, command = command.as_str(), workdir = %build.workdir.display(), "building");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&build.workdir)
                .stdin(Stdio::null())
                .stdout(std::io::stderr())
                .stderr(std::io::stderr())
                .status()
                .with_context(|| {
                    format!("cannot run the build command of component `{component}`")
                })?;
            if !status.success() {
                bail!("the build command of component `{component}` failed ({status}): {command}");
            }
        }
    }
    Ok(())
}

/// Installs the `wasm32-wasip2` Rust target with rustup when it is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => output.stdout,
        // No rustup: the toolchain is managed some other way; let cargo say
        // what is missing.
        _ => return Ok(()),
    };
    if String::from_utf8_lossy(&installed)
        .lines()
        .any(|line| line.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    tracing::info!("installing the wasm32-wasip2 Rust target");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .stdout(std::io::stderr())
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add wasm32-wasip2` failed ({status})");
    }
    Ok(())
}
