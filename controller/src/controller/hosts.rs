//! Which Ingress serves which public host: an in-memory index fed by one cluster-wide watch,
//! so the hostname check of a reconcile costs a map lookup, not a list of every Ingress.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

/// `namespace/name` of an Ingress.
type IngressKey = (String, String);

/// What the index keeps of one Ingress.
#[derive(Clone, Debug, Default)]
struct Entry {
    /// The hosts its rules serve.
    hosts: Vec<String>,
    /// The uids of its owners.
    owners: Vec<String>,
}

#[derive(Default)]
struct Index {
    /// The hosts and owner uids of each Ingress.
    ingresses: HashMap<IngressKey, Entry>,
    /// host -> the Ingresses that serve it.
    hosts: HashMap<String, BTreeSet<IngressKey>>,
    /// Ingresses seen during a re-list (`Init` .. `InitDone`).
    relisting: Option<BTreeMap<IngressKey, Entry>>,
}

impl Index {
    fn remove(&mut self, key: &IngressKey) {
        if let Some(entry) = self.ingresses.remove(key) {
            for host in entry.hosts {
                if let Some(set) = self.hosts.get_mut(&host) {
                    set.remove(key);
                    if set.is_empty() {
                        self.hosts.remove(&host);
                    }
                }
            }
        }
    }

    fn insert(&mut self, key: IngressKey, entry: Entry) {
        self.remove(&key);
        for host in &entry.hosts {
            self.hosts
                .entry(host.clone())
                .or_default()
                .insert(key.clone());
        }
        self.ingresses.insert(key, entry);
    }
}

fn entry_of(ing: &Ingress) -> (IngressKey, Entry) {
    let key = (ing.namespace().unwrap_or_default(), ing.name_any());
    let hosts = ing
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_ref())
        .map(|rules| rules.iter().filter_map(|r| r.host.clone()).collect())
        .unwrap_or_default();
    let owners = ing
        .owner_references()
        .iter()
        .map(|o| o.uid.clone())
        .collect();
    (key, Entry { hosts, owners })
}

/// The host index; clone freely.
#[derive(Clone)]
pub struct HostIndex {
    index: Arc<RwLock<Index>>,
    ready: watch::Receiver<bool>,
}

impl HostIndex {
    /// Starts the watch that feeds the index (on the current runtime).
    pub fn spawn(client: Client) -> Self {
        let index = Arc::new(RwLock::new(Index::default()));
        let (tx, ready) = watch::channel(false);
        let feed = index.clone();
        let api: Api<Ingress> = Api::all(client);
        tokio::spawn(async move {
            let mut events = kube::runtime::utils::StreamBackoff::new(
                watcher(api, watcher::Config::default()),
                super::run::WatchBackoff::default(),
            )
            .boxed();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue }; // the backoff retries
                let mut index = feed.write().unwrap_or_else(|p| p.into_inner());
                match event {
                    watcher::Event::Init => index.relisting = Some(BTreeMap::new()),
                    watcher::Event::InitApply(ing) => {
                        let (key, entry) = entry_of(&ing);
                        index.relisting.get_or_insert_default().insert(key, entry);
                    }
                    watcher::Event::InitDone => {
                        let fresh = index.relisting.take().unwrap_or_default();
                        *index = Index::default();
                        for (key, entry) in fresh {
                            index.insert(key, entry);
                        }
                        let _ = tx.send(true);
                    }
                    watcher::Event::Apply(ing) => {
                        let (key, entry) = entry_of(&ing);
                        index.insert(key, entry);
                    }
                    watcher::Event::Delete(ing) => {
                        let (key, _) = entry_of(&ing);
                        index.remove(&key);
                    }
                }
            }
        });
        Self { index, ready }
    }

    /// Waits until the first full list has been indexed.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Who, other than the owner `uid`, serves `host` through an Ingress
    /// (`Ingress namespace/name`).
    pub fn owner_other_than(&self, host: &str, uid: &str) -> Option<String> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.hosts.get(host)?.iter().find_map(|key| {
            let entry = index.ingresses.get(key)?;
            (!entry.owners.iter().any(|o| o == uid)).then(|| format!("Ingress {}/{}", key.0, key.1))
        })
    }
}
