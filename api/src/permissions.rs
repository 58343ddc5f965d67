//! The one permission table: what each role may do, consulted by every resolver and route
//! through [`Role::may`]. A refusal names the role and the action (`FORBIDDEN`, mapped once in
//! `crate::error`). Tenants never enter here: the tenant comes from the token, and every read
//! and command is scoped to it.

use chronicle_domain::api_key::ApiKeyScope;

use crate::auth::Role;

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read conversations, messages and media.
    ReadInbox,
    /// Send messages and templates, assign, tag, annotate and hand over conversations.
    WorkInbox,
    /// Read the tenant's event stream (GraphQL `events` and the live subscription).
    ReadEventStream,
    /// Read leads and the funnel.
    ReadLeads,
    /// Capture and work leads (an agent only the leads assigned to them).
    WorkLeads,
    /// Change any lead of the tenant, whoever it is assigned to.
    ManageLeads,
    /// Read contacts, templates and calls (the inbox's people).
    ReadContacts,
    /// Change contacts: profile, tags, custom fields, consent.
    WriteContacts,
    /// Erase a contact (the right to be forgotten).
    EraseContacts,
    /// Submit templates, record their review, set automation rules, send again a message left
    /// for an operator.
    ManageMessagingSettings,
    /// Read campaigns and their recipients.
    ReadCampaigns,
    /// Create, schedule, pause, resume and cancel campaigns.
    RunCampaigns,
    /// Read wallets, the ledger, usage and prices.
    ReadWallets,
    /// Credit token purchases.
    PurchaseTokens,
    /// Set prices, open sub-wallets, set thresholds, transfer between wallets.
    ManageWallets,
    /// Read payments and unmatched callbacks.
    ReadPayments,
    /// Read payment requests (agents make them).
    ReadPaymentRequests,
    /// Ask a customer to pay (a payment request).
    RequestPayments,
    /// Match unmatched payments, cancel payment requests.
    MatchPayments,
    /// Configure payment providers.
    ManageProviders,
    /// Read orders.
    ReadOrders,
    /// Place, cancel and fulfil orders.
    Sell,
    /// Handle money: cash payments, payout approval and payment.
    HandleMoney,
    /// Read installations, calendars and counts.
    ReadInstallations,
    /// Open, staff, schedule and decommission installations.
    ManageInstallations,
    /// Do an installation's field work (a technician only where assigned).
    WorkInstallations,
    /// Grant a payout's quality bonus (a management decision).
    GrantQualityBonuses,
    /// Read payouts.
    ReadPayouts,
    /// Read warranties, claims, service requests and maintenance contracts.
    ReadAfterSales,
    /// File warranty claims; open and close service requests.
    FrontDesk,
    /// Review and decide warranty claims; assign service requests.
    ManageAfterSales,
    /// Resolve service requests.
    ResolveServiceRequests,
    /// Start, renew, change and cancel maintenance contracts.
    RunMaintenanceContracts,
    /// Issue, list and revoke the tenant's API keys.
    ManageApiKeys,
    /// See personal fields (names, phone numbers, texts) opened in the event log.
    ReadPersonalEvents,
    /// Create, rotate, disable, test and delete webhook endpoints; read their delivery log.
    ManageWebhooks,
    /// Read the user directory (who work can be assigned to).
    ReadUsers,
    /// Invite users, change their roles, deactivate and reactivate them, issue password
    /// resets.
    ManageUsers,
}

use Permission::*;
use Role::{Admin, Agent, Auditor, Finance, Integrator, Owner, Technician};

/// Every permission with the roles that hold it. (Integrators manage webhooks: receiving
/// events is what their programs are for.)
pub const TABLE: &[(Permission, &[Role])] = &[
    (ReadInbox, &[Owner, Admin, Agent, Auditor]),
    (WorkInbox, &[Owner, Admin, Agent]),
    (ReadEventStream, &[Owner, Admin, Auditor, Integrator]),
    (ReadLeads, &[Owner, Admin, Agent, Auditor]),
    (WorkLeads, &[Owner, Admin, Agent]),
    (ManageLeads, &[Owner, Admin]),
    (ReadContacts, &[Owner, Admin, Agent, Auditor]),
    (WriteContacts, &[Owner, Admin, Agent]),
    (EraseContacts, &[Owner, Admin]),
    (ManageMessagingSettings, &[Owner, Admin]),
    (ReadCampaigns, &[Owner, Admin, Agent, Finance, Auditor]),
    (RunCampaigns, &[Owner, Admin]),
    (ReadWallets, &[Owner, Admin, Finance, Auditor]),
    (PurchaseTokens, &[Owner, Finance]),
    (ManageWallets, &[Owner, Admin, Finance]),
    (ReadPayments, &[Owner, Admin, Finance, Auditor]),
    (ReadPaymentRequests, &[Owner, Admin, Finance, Auditor, Agent]),
    (RequestPayments, &[Owner, Admin, Finance, Agent]),
    (MatchPayments, &[Owner, Admin, Finance]),
    (ManageProviders, &[Owner, Admin]),
    (ReadOrders, &[Owner, Admin, Agent, Finance, Auditor]),
    (Sell, &[Owner, Admin, Agent]),
    (HandleMoney, &[Owner, Admin, Finance]),
    (ReadInstallations, &[Owner, Admin, Agent, Technician, Finance, Auditor]),
    (ManageInstallations, &[Owner, Admin]),
    (WorkInstallations, &[Owner, Admin, Technician]),
    (GrantQualityBonuses, &[Owner, Admin]),
    (ReadPayouts, &[Owner, Admin, Technician, Finance, Auditor]),
    (ReadAfterSales, &[Owner, Admin, Agent, Technician, Finance, Auditor]),
    (FrontDesk, &[Owner, Admin, Agent]),
    (ManageAfterSales, &[Owner, Admin]),
    (ResolveServiceRequests, &[Owner, Admin, Technician]),
    (RunMaintenanceContracts, &[Owner, Admin, Finance]),
    (ManageApiKeys, &[Owner, Admin]),
    (ReadPersonalEvents, &[Owner, Admin, Auditor, Integrator]),
    (ManageWebhooks, &[Owner, Admin, Integrator]),
    (ReadUsers, &[Owner, Admin, Agent, Technician, Finance, Auditor]),
    (ManageUsers, &[Owner, Admin]),
];

/// Every GraphQL mutation with the permissions it needs (all of them). Empty: any signed-in
/// person (the two-factor mutations act on the caller's own account). A resolver checks its
/// permissions before it reads its input, so a caller without them is answered `FORBIDDEN`
/// whatever they sent; `tests/tests/permissions.rs` calls every mutation with every role and
/// checks this table's answer, and that every mutation of the schema is here.
///
/// Some permissions are narrowed per record beyond the role ([`NARROWED`]).
pub const MUTATIONS: &[(&str, &[Permission])] = &[
    ("issueApiKey", &[ManageApiKeys]),
    ("revokeApiKey", &[ManageApiKeys]),
    ("setCallFollowUpRule", &[ManageMessagingSettings]),
    ("disableCallFollowUpRule", &[ManageMessagingSettings]),
    ("createCampaign", &[RunCampaigns]),
    ("scheduleCampaign", &[RunCampaigns]),
    ("pauseCampaign", &[RunCampaigns]),
    ("resumeCampaign", &[RunCampaigns]),
    ("cancelCampaign", &[RunCampaigns]),
    ("tagContact", &[WriteContacts]),
    ("untagContact", &[WriteContacts]),
    ("setCustomField", &[WriteContacts]),
    ("removeCustomField", &[WriteContacts]),
    ("optIn", &[WriteContacts]),
    ("optOut", &[WriteContacts]),
    ("updateContactProfile", &[WriteContacts]),
    ("eraseContact", &[EraseContacts]),
    ("submitTemplate", &[ManageMessagingSettings]),
    ("approveTemplate", &[ManageMessagingSettings]),
    ("rejectTemplate", &[ManageMessagingSettings]),
    ("sendMessage", &[WorkInbox]),
    ("sendTemplate", &[WorkInbox]),
    ("sendMedia", &[WorkInbox]),
    ("sendInteractive", &[WorkInbox]),
    ("uploadMedia", &[WorkInbox]),
    ("assignConversation", &[WorkInbox]),
    ("resendMessage", &[ManageMessagingSettings]),
    ("refetchMedia", &[ManageMessagingSettings]),
    ("markConversationRead", &[WorkInbox]),
    ("setConversationStatus", &[WorkInbox]),
    ("tagConversation", &[WorkInbox]),
    ("untagConversation", &[WorkInbox]),
    ("addNote", &[WorkInbox]),
    ("requestHandover", &[WorkInbox]),
    ("fileWarrantyClaim", &[FrontDesk]),
    ("startWarrantyClaimReview", &[ManageAfterSales]),
    ("decideWarrantyClaim", &[ManageAfterSales]),
    ("resolveWarrantyClaim", &[ManageAfterSales]),
    ("startMaintenanceContract", &[RunMaintenanceContracts]),
    ("renewMaintenanceContract", &[RunMaintenanceContracts]),
    ("setMaintenanceAutoRenewal", &[RunMaintenanceContracts]),
    ("cancelMaintenanceContract", &[RunMaintenanceContracts]),
    ("placeOrder", &[Sell]),
    ("recordCashPayment", &[HandleMoney]),
    ("cancelOrder", &[Sell]),
    ("fulfilOrder", &[Sell]),
    ("approvePayout", &[HandleMoney]),
    ("grantQualityBonus", &[GrantQualityBonuses]),
    ("markPayoutPaid", &[HandleMoney]),
    ("openInstallation", &[ManageInstallations]),
    ("assignTechnician", &[ManageInstallations]),
    ("unassignTechnician", &[ManageInstallations]),
    ("scheduleInstallation", &[ManageInstallations]),
    ("rescheduleInstallation", &[ManageInstallations]),
    ("correctInstallation", &[ManageInstallations]),
    ("startInstallationWork", &[WorkInstallations]),
    ("completeChecklistItem", &[WorkInstallations]),
    ("attachInstallationPhoto", &[WorkInstallations]),
    ("installComponent", &[WorkInstallations]),
    ("commissionInstallation", &[WorkInstallations]),
    ("activateInstallation", &[WorkInstallations]),
    ("decommissionInstallation", &[ManageInstallations]),
    ("openServiceRequest", &[FrontDesk]),
    ("assignServiceRequest", &[ManageAfterSales]),
    ("resolveServiceRequest", &[ResolveServiceRequests]),
    ("closeServiceRequest", &[FrontDesk]),
    ("captureLead", &[WorkLeads]),
    ("assignLead", &[WorkLeads]),
    ("advanceLead", &[WorkLeads]),
    ("markLeadLost", &[WorkLeads]),
    ("reopenLead", &[WorkLeads]),
    ("winLead", &[WorkLeads]),
    ("matchPayment", &[MatchPayments]),
    ("requestPayment", &[RequestPayments]),
    ("cancelPaymentRequest", &[MatchPayments]),
    ("setPaymentProvider", &[ManageProviders]),
    ("sandboxInbound", &[ReadInbox, WriteContacts]),
    ("inviteUser", &[ManageUsers]),
    ("renewInvitation", &[ManageUsers]),
    ("changeUserRole", &[ManageUsers]),
    ("deactivateUser", &[ManageUsers]),
    ("reactivateUser", &[ManageUsers]),
    ("issuePasswordReset", &[ManageUsers]),
    ("resetTwoFactor", &[ManageUsers]),
    ("beginTwoFactorEnrolment", &[]),
    ("confirmTwoFactor", &[]),
    ("disableTwoFactor", &[]),
    ("purchaseTokens", &[PurchaseTokens]),
    ("setPrice", &[ManageWallets]),
    ("openSubWallet", &[ManageWallets]),
    ("configureWalletThresholds", &[ManageWallets]),
    ("transferTokens", &[ManageWallets]),
    ("createWebhook", &[ManageWebhooks, ReadEventStream]),
    ("rotateWebhookSecret", &[ManageWebhooks]),
    ("disableWebhook", &[ManageWebhooks]),
    ("enableWebhook", &[ManageWebhooks]),
    ("deleteWebhook", &[ManageWebhooks]),
    ("testWebhook", &[ManageWebhooks]),
    ("redeliverWebhook", &[ManageWebhooks, ReadEventStream]),
];

/// Every GraphQL query (root field) with the permissions it needs, like [`MUTATIONS`]: the
/// read models each role may read. Empty: any signed-in caller (who they are, the event
/// catalogue).
pub const QUERIES: &[(&str, &[Permission])] = &[
    ("viewer", &[]),
    ("eventTypes", &[]),
    ("agentPerformance", &[ReadInbox]),
    ("conversations", &[ReadInbox]),
    ("conversation", &[ReadInbox]),
    ("media", &[ReadInbox]),
    ("contacts", &[ReadContacts]),
    ("contact", &[ReadContacts]),
    ("templates", &[ReadContacts]),
    ("calls", &[ReadContacts]),
    ("callFollowUpRule", &[ReadContacts]),
    ("leads", &[ReadLeads]),
    ("lead", &[ReadLeads]),
    ("leadFunnel", &[ReadLeads]),
    ("campaigns", &[ReadCampaigns]),
    ("campaign", &[ReadCampaigns]),
    ("wallet", &[ReadWallets]),
    ("wallets", &[ReadWallets]),
    ("walletLedger", &[ReadWallets]),
    ("usage", &[ReadWallets]),
    ("reservations", &[ReadWallets]),
    ("walletAlerts", &[ReadWallets]),
    ("priceList", &[ReadWallets]),
    ("paymentProviders", &[ReadPayments]),
    ("payments", &[ReadPayments]),
    ("payment", &[ReadPayments]),
    ("unmatchedPayments", &[ReadPayments]),
    ("refusedPaymentCallbacks", &[ReadPayments]),
    ("paymentRequests", &[ReadPaymentRequests]),
    ("paymentRequest", &[ReadPaymentRequests]),
    ("orders", &[ReadOrders]),
    ("order", &[ReadOrders]),
    ("customers", &[ReadOrders]),
    ("customer", &[ReadOrders]),
    ("installations", &[ReadInstallations]),
    ("installation", &[ReadInstallations]),
    ("technicianCalendar", &[ReadInstallations]),
    ("installationCounts", &[ReadInstallations]),
    ("payouts", &[ReadPayouts]),
    ("warranties", &[ReadAfterSales]),
    ("warrantyClaims", &[ReadAfterSales]),
    ("serviceRequests", &[ReadAfterSales]),
    ("maintenanceContracts", &[ReadAfterSales]),
    ("apiKeys", &[ManageApiKeys]),
    ("eventLog", &[ReadEventStream]),
    ("webhooks", &[ManageWebhooks]),
    ("webhookDeliveries", &[ManageWebhooks]),
    ("users", &[ReadUsers]),
    ("user", &[ReadUsers]),
];

/// Whether `role` may read the query `name` (by [`QUERIES`]); `None` for a name that is not
/// a query.
pub fn may_read(role: Role, name: &str) -> Option<bool> {
    QUERIES
        .iter()
        .find(|(query, _)| *query == name)
        .map(|(_, permissions)| permissions.iter().all(|p| role.may(*p)))
}

/// Permissions narrowed per record for a role: the role holds the permission, but only for
/// the records it is assigned to (an agent changes only their leads, unless they also hold
/// `ManageLeads`; a technician works only installations they are on).
pub const NARROWED: &[(Permission, Role, &str)] = &[
    (ReadInbox, Agent, "their own figures in agentPerformance"),
    (WorkLeads, Agent, "the leads assigned to them"),
    (WorkInstallations, Technician, "installations they are assigned to"),
    (ReadPayouts, Technician, "the payouts that pay them"),
];

/// Whether `role` may run the mutation `name` (by [`MUTATIONS`]); `None` for a name that is
/// not a mutation.
pub fn may_run(role: Role, name: &str) -> Option<bool> {
    MUTATIONS
        .iter()
        .find(|(mutation, _)| *mutation == name)
        .map(|(_, permissions)| permissions.iter().all(|p| role.may(*p)))
}

/// The permission table as the README shows it: one row per permission, a column per role,
/// and the mutations that need it (`tests/tests/permissions.rs` keeps the README in step).
pub fn markdown() -> String {
    const ROLES: [Role; 7] = [Owner, Admin, Agent, Technician, Finance, Auditor, Integrator];
    let mut out = String::from("| permission | ");
    out.push_str(&ROLES.map(Role::as_str).join(" | "));
    out.push_str(" | mutations | queries |\n|---|");
    out.push_str(&"---|".repeat(ROLES.len()));
    out.push_str("---|---|\n");
    for (permission, roles) in TABLE {
        let marks = ROLES.map(|r| if roles.contains(&r) { "✓" } else { "" });
        let mutations: Vec<String> = MUTATIONS
            .iter()
            .filter(|(_, needs)| needs.contains(permission))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        let queries: Vec<String> = QUERIES
            .iter()
            .filter(|(_, needs)| needs.contains(permission))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        out.push_str(&format!(
            "| `{permission:?}` | {} | {} | {} |\n",
            marks.join(" | "),
            mutations.join(", "),
            queries.join(", ")
        ));
    }
    out
}

impl Permission {
    /// The names of the roles that hold this permission.
    pub fn role_names(self) -> Vec<&'static str> {
        self.roles().iter().map(|r| r.as_str()).collect()
    }

    /// The roles that hold this permission.
    pub fn roles(self) -> &'static [Role] {
        TABLE
            .iter()
            .find(|(permission, _)| *permission == self)
            .map_or(&[], |(_, roles)| roles)
    }
}

impl Permission {
    /// The API key scopes of which one must be held, beside the role, for a key to do this.
    /// Empty: no key may, whatever its role (money, erasure, configuration, keys themselves:
    /// people do those).
    pub fn key_scopes(self) -> &'static [ApiKeyScope] {
        use ApiKeyScope as S;
        match self {
            ReadInbox => &[S::InboxRead],
            WorkInbox => &[S::InboxWrite],
            ReadEventStream => &[S::EventsRead],
            ReadPersonalEvents => &[S::EventsReadPersonal],
            ManageWebhooks => &[S::WebhooksManage],
            ReadLeads => &[S::LeadsRead],
            WorkLeads | ManageLeads => &[S::LeadsWrite],
            ReadContacts => &[S::ContactsRead],
            WriteContacts => &[S::ContactsWrite],
            ReadCampaigns => &[S::CampaignsRead],
            ReadWallets => &[S::WalletsRead],
            ReadPayments | ReadPaymentRequests => &[S::PaymentsRead],
            ReadOrders => &[S::OrdersRead],
            Sell => &[S::OrdersWrite],
            ReadInstallations | ReadPayouts | ReadAfterSales => &[S::InstallationsRead],
            EraseContacts
            | ManageMessagingSettings
            | RunCampaigns
            | PurchaseTokens
            | ManageWallets
            | RequestPayments
            | MatchPayments
            | ManageProviders
            | HandleMoney
            | ManageInstallations
            | WorkInstallations
            | GrantQualityBonuses
            | FrontDesk
            | ManageAfterSales
            | ResolveServiceRequests
            | RunMaintenanceContracts
            | ManageApiKeys
            | ReadUsers
            | ManageUsers => &[],
        }
    }
}

impl Role {
    /// Whether the role holds `permission` (the [`TABLE`]).
    pub fn may(self, permission: Permission) -> bool {
        permission.roles().contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Role; 7] = [Owner, Admin, Agent, Technician, Finance, Auditor, Integrator];

    #[test]
    fn every_permission_is_in_the_table_once_and_held_by_its_owner() {
        for (i, (permission, roles)) in TABLE.iter().enumerate() {
            assert!(roles.contains(&Owner), "{permission:?}: the owner may do everything");
            assert!(
                TABLE[i + 1..].iter().all(|(other, _)| other != permission),
                "{permission:?} is listed twice"
            );
        }
        assert_eq!(
            TABLE.len(),
            38,
            "a permission was added without its row, or a row was lost"
        );
    }

    #[test]
    fn integrators_read_the_event_stream_and_manage_webhooks_only_and_auditors_never_write() {
        for (permission, _) in TABLE {
            assert_eq!(
                Integrator.may(*permission),
                matches!(*permission, ReadEventStream | ReadPersonalEvents | ManageWebhooks),
                "{permission:?}"
            );
        }
        let auditor_reads: Vec<Permission> = TABLE.iter().map(|(p, _)| *p).filter(|p| Auditor.may(*p)).collect();
        assert_eq!(
            auditor_reads,
            [
                ReadInbox,
                ReadEventStream,
                ReadLeads,
                ReadContacts,
                ReadCampaigns,
                ReadWallets,
                ReadPayments,
                ReadPaymentRequests,
                ReadOrders,
                ReadInstallations,
                ReadPayouts,
                ReadAfterSales,
                ReadPersonalEvents,
                ReadUsers
            ]
        );
        assert_eq!(ALL.iter().filter(|r| r.may(EraseContacts)).count(), 2);
    }
}
