//! A feature priced in interleaved rounds: the servers with and without it
//! both up (the registry ones seeded alike), each round loading them in
//! short turns by one `hero-bench alternate` (A B B A …), alternating from
//! round to round which takes the first turn.

use std::net::SocketAddr;

use anyhow::Context;

use super::{Runner, START_TIMEOUT, STOP_GRACE};
use crate::client::Client;
use crate::contender::Contender;
use crate::lineup::PricePlan;
use crate::price::{PriceRound, PriceRow, Side};
use crate::scenario::Scenario;
use crate::server::{self, Launch, Server};
use crate::sink::SinkStats;

impl Runner<'_> {
    /// Prices `plan`'s feature, or says why it was not priced.
    pub fn price(&self, plan: &PricePlan) -> PriceRow {
        let labels = (plan.on.label.as_str(), plan.off.label.as_str());
        if let Some(why) = &plan.skip {
            return PriceRow::skipped(plan.what, plan.scenario, labels, why.clone());
        }
        let sink = match plan
            .sink
            .as_ref()
            .map(|sink| self.start_sink(sink))
            .transpose()
        {
            Ok(sink) => sink,
            Err(error) => {
                let why = format!("not measured: the OTLP sink: {error:#}");
                return PriceRow::skipped(plan.what, plan.scenario, labels, why);
            }
        };
        let rounds = self.rounds(plan);
        let stats = sink.map(|sink| {
            let stats = sink_stats(sink.listen);
            let _ = sink.stop(STOP_GRACE);
            stats
        });
        let mut row = match rounds {
            Ok(rounds) => PriceRow::new(plan.what, plan.scenario, labels, rounds),
            Err(error) => {
                let why = format!("not measured: {error:#}");
                return PriceRow::skipped(plan.what, plan.scenario, labels, why);
            }
        };
        match stats {
            Some(Ok(stats)) if stats.bytes == 0 => row.void(
                "the sink received nothing: the host started but ignored the OTEL_* \
                 variables, so these rounds price nothing"
                    .into(),
            ),
            Some(Ok(stats)) => {
                row.note = Some(format!(
                    "the sink received {} exports, {:.1} KiB",
                    stats.requests,
                    stats.bytes as f64 / 1024.0
                ))
            }
            Some(Err(error)) => row.void(format!("the sink's count is unknown: {error:#}")),
            None => {}
        }
        row
    }

    /// Starts both servers, seeds them when the scenario reads heroes, and
    /// runs the rounds.
    fn rounds(&self, plan: &PricePlan) -> anyhow::Result<Vec<PriceRound>> {
        let start = |contender: &Contender, scenario| -> anyhow::Result<(Server, Vec<String>)> {
            let (server, _) = self.start_empty(contender)?;
            Ok((server, self.price_args(contender, scenario)?))
        };
        let mut sides = [
            start(&plan.on, plan.scenario)?,
            start(&plan.off, plan.off_scenario)?,
        ];
        let client = Client {
            duration: self.args.price_slice.unwrap_or(self.client.duration),
            ..self.client.clone()
        };
        let mut rounds = Vec::new();
        for round in 0..self.args.price_rounds {
            let [on, off] = &mut sides;
            // Which side takes the first turn alternates from round to round.
            let reports = client.alternate(
                [(&mut on.0, &on.1), (&mut off.0, &off.1)],
                self.args.price_turn,
                round % 2 == 1,
            )?;
            let [on, off] = reports.map(|report| Side {
                rps: report.rps,
                p99_ms: report.latency.p99_ms,
            });
            let round = PriceRound::new(on, off);
            eprintln!(
                "   with {:.0} req/s p99 {:.2} ms, without {:.0} req/s p99 {:.2} ms: cost {:.1}%",
                round.on_rps,
                round.on_p99_ms,
                round.off_rps,
                round.off_p99_ms,
                round.cost * 100.0
            );
            rounds.push(round);
        }
        for (server, _) in sides {
            server.stop(STOP_GRACE)?;
        }
        self.discard_log(&plan.on);
        self.discard_log(&plan.off);
        Ok(rounds)
    }

    /// The load arguments of one side, after seeding it if the scenario
    /// reads heroes (as many as a list scenario has stored).
    fn price_args(&self, contender: &Contender, scenario: Scenario) -> anyhow::Result<Vec<String>> {
        let ids = self
            .scratch
            .join(format!("price-ids-{}.txt", contender.key));
        let seed = match scenario {
            Scenario::GetHero => self.args.seed_count,
            Scenario::List { stored } => stored,
            Scenario::Root | Scenario::PostHero | Scenario::Hello => 0,
        };
        if seed > 0 {
            self.client.seed(contender.launch.listen, seed, &ids)?;
        }
        let mut args = scenario.load_args(&ids);
        args.extend(contender.load_args.iter().cloned());
        Ok(args)
    }

    /// Starts the OTLP sink on the client core and waits until it answers.
    fn start_sink(&self, launch: &Launch) -> anyhow::Result<Server> {
        let (mut sink, started) = server::start(launch, &self.args.client_cpu)?;
        sink.wait_ready(launch.listen, "/stats", started, START_TIMEOUT)?;
        Ok(sink)
    }
}

/// What the sink at `addr` received.
fn sink_stats(addr: SocketAddr) -> anyhow::Result<SinkStats> {
    let (status, body) = server::get(addr, "/stats")?;
    anyhow::ensure!(status == 200, "GET /stats answered {status}");
    serde_json::from_slice(&body).context("the sink's /stats")
}
