//! The gRPC service as served: Flight SQL ([`Service`]), plus the JSON tickets that
//! InfluxDB 3's clients send straight to `DoGet` (`influxdb3-python`, the Go, Java and
//! C# clients: `{"database": ..., "sql_query": ..., "query_type": "sql", "params": {...}}`,
//! no `GetFlightInfo` first). Every other call goes to the Flight SQL service unchanged.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use serde::Deserialize;
use tonic::{Request, Response, Status, Streaming};

use crate::params;
use crate::service::Service;

type Stream<T> = BoxStream<'static, Result<T, Status>>;

/// The served service: Flight SQL with InfluxDB 3 tickets on `DoGet`.
pub(crate) struct Front(pub(crate) Service);

/// The ticket of InfluxDB 3's clients (its server also accepts `bucket` and
/// `namespace_name` for the database).
#[derive(Debug, Deserialize, PartialEq)]
struct InfluxTicket {
    #[serde(default, alias = "bucket", alias = "namespace_name")]
    database: String,
    sql_query: String,
    #[serde(default = "sql")]
    query_type: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
}

fn sql() -> String {
    "sql".to_owned()
}

impl InfluxTicket {
    /// `ticket` as an InfluxDB 3 ticket, or `None` when it is not JSON (a Flight SQL
    /// ticket is a protobuf `Any`, whose first byte is never `{`).
    #[allow(clippy::result_large_err)]
    fn parse(ticket: &[u8]) -> Result<Option<Self>, Status> {
        if ticket.trim_ascii_start().first() != Some(&b'{') {
            return Ok(None);
        }
        let t: Self = serde_json::from_slice(ticket).map_err(|e| {
            Status::invalid_argument(format!(
                "invalid InfluxDB ticket: {e} (expected {{\"database\": ..., \"sql_query\": ..., \
                 \"query_type\": \"sql\"}})"
            ))
        })?;
        if !t.query_type.eq_ignore_ascii_case("sql") {
            return Err(Status::unimplemented(format!(
                "query_type `{}` is not served over Flight: send SQL, or InfluxQL to the HTTP \
                 API's /query",
                t.query_type
            )));
        }
        Ok(Some(t))
    }
}

#[tonic::async_trait]
impl FlightService for Front {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let Some(ticket) = InfluxTicket::parse(&request.get_ref().ticket)? else {
            return FlightService::do_get(&self.0, request).await;
        };
        self.0.authorize(request.metadata()).await?;
        let db = if ticket.database.is_empty() {
            self.0.database(request.metadata())?
        } else {
            Some(ticket.database)
        };
        let sql = if ticket.params.is_empty() {
            ticket.sql_query
        } else {
            params::substitute_named(&ticket.sql_query, &ticket.params)?
        };
        self.0.execute(db, sql).await
    }

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.0, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.0, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.0, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(&self.0, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        FlightService::get_schema(&self.0, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.0, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.0, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.0, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.0, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
    use prost::Message;

    #[test]
    fn influx_tickets_are_told_from_flight_sql_tickets() {
        let t = InfluxTicket::parse(
            br#" {"database":"demo","sql_query":"select 1","query_type":"sql"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.database.as_str(), t.sql_query.as_str()),
            ("demo", "select 1")
        );
        let bucket = InfluxTicket::parse(br#"{"bucket":"b","sql_query":"q"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(bucket.database, "b");

        // A Flight SQL ticket (a protobuf Any) is left to the Flight SQL service.
        let flight_sql = TicketStatementQuery {
            statement_handle: br#"{"db":"demo"}"#.to_vec().into(),
        }
        .as_any()
        .encode_to_vec();
        assert!(InfluxTicket::parse(&flight_sql).unwrap().is_none());

        let influxql = InfluxTicket::parse(
            br#"{"database":"d","sql_query":"show measurements","query_type":"influxql"}"#,
        )
        .unwrap_err();
        assert_eq!(influxql.code(), tonic::Code::Unimplemented);
        assert!(influxql.message().contains("/query"), "{influxql:?}");
        let bad = InfluxTicket::parse(br#"{"database":"d"}"#).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("sql_query"), "{bad:?}");
        let params = InfluxTicket::parse(br#"{"sql_query":"select $a","params":{"a":1}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(params.params["a"], 1);
    }
}
