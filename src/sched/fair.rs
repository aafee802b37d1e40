//! Fair turns on one ComfyUI queue: start-time fair queueing expressed as ComfyUI `number`s.
//!
//! ComfyUI runs its queue in ascending `number` order (a min-heap on a float). comfy-warden gives
//! every prompt a number from a virtual clock, so that ComfyUI's own order is the fair order:
//! each user has a *finish tag*; a new prompt of that user gets
//! `tag = max(clock, user's last tag) + stride`, where `stride = 1 turn / weight`. The clock is
//! the smallest tag still in ComfyUI's queue (the running prompt, else the next waiting one), so
//! a user who was idle starts level with the one being served instead of banking credit, and a
//! user with weight 2 gets two turns for every turn of a user with weight 1.
//!
//! Numbers are kept as integer ticks (`TICKS_PER_TURN` per turn of weight 1) and made unique by
//! moving a colliding tag one tick later, so prompts with equal tags run in arrival order and
//! the order never depends on ComfyUI's tie-break (the prompt id). This module is pure data: it
//! never talks to ComfyUI; the caller tells it what it placed, what started and what ended.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Ticks in one turn of a weight-1 user.
pub const TICKS_PER_TURN: u64 = 1_000_000;

/// The `number` a prompt is queued with in ComfyUI.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Number(pub f64);

impl Number {
    fn of_tick(tick: Tick) -> Number {
        match tick {
            Tick::Front(n) => Number(-(n as f64)),
            Tick::Fair(t) => Number(t as f64 / TICKS_PER_TURN as f64),
        }
    }
}

/// A position in the queue: admins' `front` prompts before every fair one (the newest front
/// first, as ComfyUI does), then fair prompts by tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Tick {
    /// `front` prompts: a larger counter runs earlier, so it sorts by the negated value.
    Front(u64),
    Fair(u64),
}

impl Tick {
    fn sort_key(self) -> (u8, u64) {
        match self {
            Tick::Front(n) => (0, u64::MAX - n),
            Tick::Fair(t) => (1, t),
        }
    }
}

/// A prompt waiting in (or handed to) ComfyUI's queue, as the lane remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub prompt_id: String,
    pub user: String,
    /// When it was queued (unix milliseconds), for waiting times.
    pub queued_at_ms: u64,
    tick: Tick,
}

impl Waiting {
    pub fn number(&self) -> Number {
        Number::of_tick(self.tick)
    }
}

/// The weight of a user's turns: `> 0`; a user with weight 2 gets twice the turns of weight 1.
pub fn stride(weight: f64) -> u64 {
    if weight.is_finite() && weight > 0.0 {
        ((TICKS_PER_TURN as f64 / weight).round() as u64).max(1)
    } else {
        TICKS_PER_TURN
    }
}

/// One ComfyUI queue's fair order.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Lane {
    /// Virtual time in ticks: no new fair prompt is tagged before it.
    clock: u64,
    /// Each user's finish tag: the tag of their last placed prompt.
    finish: HashMap<String, u64>,
    /// Prompts not yet started, keyed by their position.
    #[serde(with = "waiting_list")]
    waiting: BTreeMap<(u8, u64), Waiting>,
    /// Prompt id → position in `waiting`.
    #[serde(skip)]
    index: HashMap<String, (u8, u64)>,
    /// Counter of `front` prompts.
    fronts: u64,
}

impl Lane {
    /// Tags a new prompt of `user` (whose turns have `weight`) and remembers it as waiting.
    /// A prompt id already waiting keeps its place.
    pub fn place(&mut self, prompt_id: &str, user: &str, weight: f64, now_ms: u64) -> Number {
        if let Some(w) = self.get(prompt_id) {
            return w.number();
        }
        let last = self.finish.get(user).copied().unwrap_or(0);
        let mut tag = self.clock.max(last).saturating_add(stride(weight));
        while self.waiting.contains_key(&Tick::Fair(tag).sort_key()) {
            tag = tag.saturating_add(1);
        }
        self.finish.insert(user.to_owned(), tag);
        self.insert(prompt_id, user, Tick::Fair(tag), now_ms)
    }

    /// An admin's `front` prompt: before every fair one, the newest first.
    pub fn place_front(&mut self, prompt_id: &str, user: &str, now_ms: u64) -> Number {
        if let Some(w) = self.get(prompt_id) {
            return w.number();
        }
        self.fronts += 1;
        self.insert(prompt_id, user, Tick::Front(self.fronts), now_ms)
    }

    fn insert(&mut self, prompt_id: &str, user: &str, tick: Tick, now_ms: u64) -> Number {
        let key = tick.sort_key();
        self.waiting.insert(
            key,
            Waiting {
                prompt_id: prompt_id.to_owned(),
                user: user.to_owned(),
                queued_at_ms: now_ms,
                tick,
            },
        );
        self.index.insert(prompt_id.to_owned(), key);
        Number::of_tick(tick)
    }

    pub fn get(&self, prompt_id: &str) -> Option<&Waiting> {
        self.index.get(prompt_id).and_then(|k| self.waiting.get(k))
    }

    /// The prompt left the waiting list (it started, was deleted, or ComfyUI refused it).
    /// Starting moves the clock up to its tag.
    pub fn remove(&mut self, prompt_id: &str, started: bool) -> Option<Waiting> {
        let key = self.index.remove(prompt_id)?;
        let w = self.waiting.remove(&key)?;
        if started && let Tick::Fair(t) = w.tick {
            self.clock = self.clock.max(t);
        }
        if !started {
            self.forget_tag_if_last(&w);
        }
        Some(w)
    }

    /// A user's last prompt was taken back before it ran: their next one may take its place.
    fn forget_tag_if_last(&mut self, w: &Waiting) {
        let Tick::Fair(t) = w.tick else { return };
        if self.finish.get(&w.user) == Some(&t) {
            let previous = self
                .waiting
                .values()
                .filter(|o| o.user == w.user)
                .filter_map(|o| match o.tick {
                    Tick::Fair(t) => Some(t),
                    Tick::Front(_) => None,
                })
                .max();
            match previous {
                Some(p) => self.finish.insert(w.user.clone(), p),
                None => self.finish.insert(w.user.clone(), self.clock),
            };
        }
    }

    /// Reconciles with ComfyUI's queue: every waiting prompt that ComfyUI no longer lists as
    /// pending has started or ended. `pending` holds the ids ComfyUI lists as pending.
    /// Returns the ids that left.
    pub fn observe_pending(&mut self, pending: &dyn Fn(&str) -> bool) -> Vec<String> {
        let gone: Vec<String> = self
            .waiting
            .values()
            .filter(|w| !pending(&w.prompt_id))
            .map(|w| w.prompt_id.clone())
            .collect();
        for id in &gone {
            self.remove(id, true);
        }
        if self.waiting.is_empty() {
            // Nobody waits: everyone starts level with the newest tag.
            let newest = self.finish.values().copied().max().unwrap_or(0);
            self.clock = self.clock.max(newest);
        }
        gone
    }

    /// Waiting prompts in the order they will run.
    pub fn in_order(&self) -> impl Iterator<Item = &Waiting> {
        self.waiting.values()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// How many prompts of `user` wait.
    pub fn waiting_of(&self, user: &str) -> usize {
        self.waiting.values().filter(|w| &*w.user == user).count()
    }

    /// New weights (a reload): the waiting prompts are tagged again from the clock, each user's
    /// in their own order, as if they had been queued under the new weights. Returns the prompts
    /// whose number changed, in their new run order, with the new number; none is lost.
    pub fn reweigh(&mut self, weight_of: &dyn Fn(&str) -> f64) -> Vec<(String, Number)> {
        let old: Vec<Waiting> = std::mem::take(&mut self.waiting).into_values().collect();
        self.index.clear();
        let mut next: HashMap<String, u64> = HashMap::new();
        let mut retagged: Vec<(Waiting, Tick)> = Vec::with_capacity(old.len());
        for w in old {
            let tick = match w.tick {
                Tick::Front(n) => Tick::Front(n),
                Tick::Fair(_) => {
                    let t = next.entry(w.user.clone()).or_insert(self.clock);
                    *t = t.saturating_add(stride(weight_of(&w.user)));
                    Tick::Fair(*t)
                }
            };
            retagged.push((w, tick));
        }
        // Equal tags keep their previous relative order (the old order is the iteration order).
        let mut changed = HashSet::new();
        for (mut w, mut tick) in retagged {
            while let Tick::Fair(t) = tick
                && self.waiting.contains_key(&tick.sort_key())
            {
                tick = Tick::Fair(t.saturating_add(1));
            }
            if tick != w.tick {
                changed.insert(w.prompt_id.clone());
            }
            w.tick = tick;
            let key = tick.sort_key();
            self.index.insert(w.prompt_id.clone(), key);
            self.waiting.insert(key, w);
        }
        // A user with prompts waiting: their finish tag is their last new tag.
        for user in next.keys() {
            self.finish.insert(user.clone(), self.clock);
        }
        for w in self.waiting.values() {
            if let Tick::Fair(t) = w.tick
                && let Some(f) = self.finish.get_mut(&w.user)
                && next.contains_key(&w.user)
            {
                *f = (*f).max(t);
            }
        }
        self.in_order()
            .filter(|w| changed.contains(&w.prompt_id))
            .map(|w| (w.prompt_id.clone(), w.number()))
            .collect()
    }

    /// Rebuilds the id index after loading a snapshot.
    pub fn reindex(&mut self) {
        self.index = self
            .waiting
            .iter()
            .map(|(k, w)| (w.prompt_id.clone(), *k))
            .collect();
    }
}

/// The waiting map as a list in the snapshot (JSON objects need string keys).
mod waiting_list {
    use super::Waiting;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(u8, u64), Waiting>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<&Waiting> = map.values().collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(u8, u64), Waiting>, D::Error> {
        let list = Vec::<Waiting>::deserialize(d)?;
        Ok(list.into_iter().map(|w| (w.tick.sort_key(), w)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> String {
        name.to_owned()
    }

    /// Runs the lane like ComfyUI would: the lowest number starts; returns the owners in
    /// run order.
    fn drain(lane: &mut Lane) -> Vec<String> {
        let mut order = Vec::new();
        loop {
            let Some(w) = lane.in_order().next().cloned() else {
                break;
            };
            lane.remove(&w.prompt_id, true);
            order.push(w.user.to_string());
        }
        order
    }

    #[test]
    fn a_newcomer_waits_for_at_most_one_more_prompt() {
        let mut lane = Lane::default();
        let (a, b) = (user("alice"), user("bob"));
        for i in 0..6 {
            lane.place(&format!("a{i}"), &a, 1.0, 0);
        }
        // Alice's first starts; then bob submits one.
        lane.remove("a0", true);
        lane.place("b0", &b, 1.0, 0);
        let order: Vec<String> = lane.in_order().map(|w| w.prompt_id.clone()).collect();
        let bob = order.iter().position(|p| p == "b0").unwrap();
        let alice_third = order.iter().position(|p| p == "a2").unwrap();
        assert!(bob < alice_third, "{order:?}");
    }

    #[test]
    fn equal_weights_take_turns_among_five_users() {
        let mut lane = Lane::default();
        let users: Vec<String> = (0..5).map(|i| user(&format!("u{i}"))).collect();
        for (i, u) in users.iter().enumerate() {
            for j in 0..4 {
                lane.place(&format!("{i}-{j}"), u, 1.0, 0);
            }
        }
        let order = drain(&mut lane);
        for round in order.chunks(5) {
            let mut seen: Vec<&String> = round.iter().collect();
            seen.sort();
            seen.dedup();
            assert_eq!(
                seen.len(),
                5,
                "each round serves every user once: {order:?}"
            );
        }
    }

    #[test]
    fn weight_two_gets_twice_the_turns() {
        let mut lane = Lane::default();
        let (p, u) = (user("power"), user("plain"));
        for i in 0..10 {
            lane.place(&format!("p{i}"), &p, 2.0, 0);
            lane.place(&format!("u{i}"), &u, 1.0, 0);
        }
        let order = drain(&mut lane);
        let first_nine = &order[..9];
        let powers = first_nine.iter().filter(|o| *o == "power").count();
        assert_eq!(powers, 6, "{order:?}");
    }

    #[test]
    fn an_idle_user_banks_no_credit() {
        let mut lane = Lane::default();
        let (a, b) = (user("alice"), user("bob"));
        // Bob ran once long ago; alice has run many since.
        lane.place("b-old", &b, 1.0, 0);
        lane.remove("b-old", true);
        for i in 0..20 {
            lane.place(&format!("a{i}"), &a, 1.0, 0);
            lane.remove(&format!("a{i}"), true);
        }
        for i in 0..4 {
            lane.place(&format!("a-more{i}"), &a, 1.0, 0);
        }
        lane.remove("a-more0", true);
        for i in 0..4 {
            lane.place(&format!("b{i}"), &b, 1.0, 0);
        }
        let order = drain(&mut lane);
        // Bob does not get all four turns in a row: they alternate.
        assert_eq!(&order[..4], ["alice", "bob", "alice", "bob"], "{order:?}");
    }

    #[test]
    fn front_goes_first_newest_first() {
        let mut lane = Lane::default();
        let (a, admin) = (user("alice"), user("admin"));
        lane.place("a0", &a, 1.0, 0);
        let n1 = lane.place_front("f1", &admin, 0);
        let n2 = lane.place_front("f2", &admin, 0);
        assert!(n2 < n1 && n1 < lane.get("a0").unwrap().number());
        let ids: Vec<&str> = lane.in_order().map(|w| w.prompt_id.as_str()).collect();
        assert_eq!(ids, ["f2", "f1", "a0"]);
    }

    #[test]
    fn numbers_are_unique_and_follow_the_order() {
        let mut lane = Lane::default();
        for i in 0..50 {
            let u = user(&format!("u{}", i % 7));
            lane.place(&format!("p{i}"), &u, 1.0 + (i % 3) as f64, 0);
        }
        let numbers: Vec<f64> = lane.in_order().map(|w| w.number().0).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    }

    #[test]
    fn placing_the_same_id_twice_keeps_its_place() {
        let mut lane = Lane::default();
        let a = user("alice");
        let n = lane.place("x", &a, 1.0, 0);
        assert_eq!(lane.place("x", &a, 1.0, 0), n);
        assert_eq!(lane.len(), 1);
    }

    #[test]
    fn deleting_the_last_prompt_gives_its_place_back() {
        let mut lane = Lane::default();
        let a = user("alice");
        let first = lane.place("a0", &a, 1.0, 0);
        lane.remove("a0", false);
        assert_eq!(lane.place("a1", &a, 1.0, 0), first);
    }

    #[test]
    fn observe_removes_what_comfyui_no_longer_holds() {
        let mut lane = Lane::default();
        let a = user("alice");
        for i in 0..3 {
            lane.place(&format!("a{i}"), &a, 1.0, 0);
        }
        let gone = lane.observe_pending(&|id| id != "a0");
        assert_eq!(gone, ["a0"]);
        assert_eq!(lane.len(), 2);
        // The clock moved to a0's tag: a newcomer lands right after a1.
        let b = user("bob");
        lane.place("b0", &b, 1.0, 0);
        let ids: Vec<&str> = lane.in_order().map(|w| w.prompt_id.as_str()).collect();
        assert_eq!(ids, ["a1", "b0", "a2"]);
    }

    #[test]
    fn reweigh_reorders_and_loses_nothing() {
        let mut lane = Lane::default();
        let (p, u) = (user("pat"), user("uma"));
        for i in 0..6 {
            lane.place(&format!("p{i}"), &p, 1.0, 0);
            lane.place(&format!("u{i}"), &u, 1.0, 0);
        }
        let before: Vec<String> = lane.in_order().map(|w| w.prompt_id.clone()).collect();
        let changed = lane.reweigh(&|name| if name == "pat" { 3.0 } else { 1.0 });
        assert!(!changed.is_empty());
        let after: Vec<String> = lane.in_order().map(|w| w.prompt_id.clone()).collect();
        let mut b = before.clone();
        let mut a = after.clone();
        b.sort();
        a.sort();
        assert_eq!(a, b, "the same prompts wait");
        // pat now gets three turns for each of uma's.
        let owners: Vec<String> = after.iter().map(|id| id[..1].to_owned()).collect();
        assert_eq!(
            owners[..4].iter().filter(|o| *o == "p").count(),
            3,
            "{after:?}"
        );
        // Each user's own prompts keep their order.
        let pats: Vec<&String> = after.iter().filter(|id| id.starts_with('p')).collect();
        assert!(pats.windows(2).all(|w| w[0] < w[1]));
        // Every changed id reports its new number, in run order.
        let nums: Vec<f64> = changed.iter().map(|(_, n)| n.0).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]));
        for (id, n) in &changed {
            assert_eq!(lane.get(id).unwrap().number(), *n);
        }
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut lane = Lane::default();
        let a = user("alice");
        lane.place("a0", &a, 1.0, 5);
        lane.place_front("f", &a, 6);
        let json = serde_json::to_string(&lane).unwrap();
        let mut back: Lane = serde_json::from_str(&json).unwrap();
        back.reindex();
        let ids: Vec<&str> = back.in_order().map(|w| w.prompt_id.as_str()).collect();
        assert_eq!(ids, ["f", "a0"]);
        assert_eq!(
            back.get("a0").unwrap().number(),
            lane.get("a0").unwrap().number()
        );
        let b = user("bob");
        assert!(back.place("b0", &b, 1.0, 7) > back.get("a0").unwrap().number());
    }

    #[test]
    fn bad_weights_count_as_one() {
        assert_eq!(stride(0.0), TICKS_PER_TURN);
        assert_eq!(stride(-2.0), TICKS_PER_TURN);
        assert_eq!(stride(f64::NAN), TICKS_PER_TURN);
        assert_eq!(stride(2.0), TICKS_PER_TURN / 2);
        assert_eq!(stride(1e12), 1);
    }
}
