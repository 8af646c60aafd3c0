//! `template.yaml` deploys exactly the functions this crate builds, and serves every
//! route of the API at its contract path and method.

fn template() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap()
}

fn binaries() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    names.sort();
    names
}

/// The template's top-level entries: each starts on a line indented by two spaces.
fn blocks(template: &str) -> Vec<String> {
    let mut blocks: Vec<String> = vec![];
    for line in template.lines() {
        let starts_entry = line.starts_with("  ") && line.chars().nth(2).is_some_and(|c| c.is_ascii_alphabetic());
        match blocks.last_mut() {
            Some(block) if !starts_entry => {
                block.push_str(line);
                block.push('\n');
            }
            _ => blocks.push(format!("{line}\n")),
        }
    }
    blocks
}

/// The resource that builds `binary`.
fn function_block(template: &str, binary: &str) -> String {
    let needle = format!("        Binary: {binary}\n");
    blocks(template).into_iter().find(|b| b.contains(&needle)).unwrap_or_else(|| panic!("template.yaml builds no function from binary {binary}"))
}

#[test]
fn every_binary_is_a_function_and_every_function_a_binary() {
    let template = template();
    let built: Vec<String> = template.lines().filter_map(|l| l.strip_prefix("        Binary: ")).map(str::to_string).collect();
    let mut sorted = built.clone();
    sorted.sort();
    assert_eq!(sorted, binaries());
    assert_eq!(template.matches("BuildMethod: rust-cargolambda").count(), built.len());
}

#[test]
fn every_route_is_served_by_its_function_at_its_path() {
    let template = template();
    for route in api::Route::ALL {
        let binary = route.binary();
        let block = function_block(&template, &binary);
        assert!(block.contains(&format!("            Path: {}\n", route.path())), "{binary} is not at {}:\n{block}", route.path());
        assert!(block.contains(&format!("            Method: {}\n", route.method().to_lowercase())), "{binary} method:\n{block}");
        assert_eq!(block.contains("Authorizer: NONE"), !route.needs_caller(), "{binary}: only the health check skips the authorizer");
        // Every caller's request is counted against its rate limit (an UpdateItem).
        assert_eq!(block.contains("        - !Ref RateLimitPolicy\n"), route.needs_caller(), "{binary}: the rate-limit policy");
    }
}

#[test]
fn every_alarm_notifies_the_alarm_topic_and_its_arn_is_an_output() {
    let template = template();
    let alarms: Vec<String> = blocks(&template).into_iter().filter(|b| b.contains("    Type: AWS::CloudWatch::Alarm\n")).collect();
    assert!(alarms.len() >= 9, "{} alarms", alarms.len());
    for alarm in alarms {
        assert!(alarm.contains("      AlarmActions: [!Ref AlarmTopic]\n"), "{alarm}");
    }
    assert!(template.contains("  AlarmTopicArn:\n"), "the topic's ARN is an output");
}

#[test]
fn each_state_machine_substitutes_every_step_function_and_may_invoke_only_those() {
    let template = template();
    let sagas = [
        ("TransferStateMachine", "statemachines/transfer.asl.json", &shared::saga::transfer::STEPS[..]),
        ("ClaimStateMachine", "statemachines/claim.asl.json", &shared::saga::claim::STEPS[..]),
    ];
    for (machine, definition, steps) in sagas {
        let block = blocks(&template).into_iter().find(|b| b.starts_with(&format!("  {machine}:\n"))).unwrap_or_else(|| panic!("no {machine}"));
        assert!(block.contains(&format!("      DefinitionUri: {definition}\n")), "{machine}:\n{block}");
        for (key, binary) in steps {
            let logical = function_block(&template, binary).trim_start().split(':').next().unwrap().to_string();
            assert!(block.contains(&format!("        {key}: !GetAtt {logical}.Arn\n")), "{machine}: {key} must name {logical}");
            assert!(block.contains(&format!("        - LambdaInvokePolicy: {{ FunctionName: !Ref {logical} }}\n")), "{machine} must invoke {logical}");
        }
        assert_eq!(block.matches("!GetAtt").count(), steps.len(), "{machine} substitutes only its steps");
        assert_eq!(block.matches("LambdaInvokePolicy").count(), steps.len(), "{machine} invokes only its steps");
    }
}

#[test]
fn the_saga_starter_may_start_every_saga_it_starts() {
    let template = template();
    let block = function_block(&template, "saga-starter");
    for trigger in functions::saga_starter::TRIGGERS {
        let (env, machine) = match trigger.state_machine {
            "transfer" => ("TRANSFER_STATE_MACHINE_ARN", "TransferStateMachine"),
            "claim" => ("CLAIM_STATE_MACHINE_ARN", "ClaimStateMachine"),
            other => panic!("the starter starts {other}: give it its ARN"),
        };
        assert!(block.contains(&format!("          {env}: !Ref {machine}\n")), "{env}:\n{block}");
        assert!(block.contains(&format!("        - StepFunctionsExecutionPolicy: {{ StateMachineName: !GetAtt {machine}.Name }}\n")), "{machine}:\n{block}");
    }
}

/// A function that appends events runs the command service: it reads a stream's
/// first event (who-may checks, `GetItem` on the events table) and snapshots of long
/// streams (`GetItem`/`PutItem` on the idempotency table). LocalStack does not
/// enforce IAM, so only this test stands between a missing action and AWS refusing it.
#[test]
fn every_function_that_appends_events_may_read_first_events_and_snapshots() {
    let template = template();
    let mut appenders = 0;
    for binary in binaries() {
        let block = function_block(&template, &binary);
        let statement = |resource: &str| -> Option<String> {
            let at = block.find(&format!("Resource: !GetAtt {resource}.Arn"))?;
            let action = block[..at].rfind("Action: [")?;
            Some(block[action..at].to_string())
        };
        let Some(events) = statement("EventsTable").filter(|a| a.contains("dynamodb:PutItem")) else { continue };
        appenders += 1;
        assert!(events.contains("dynamodb:GetItem"), "{binary}: GetItem on the events table (first events)");
        let snapshots = statement("IdempotencyTable").unwrap_or_else(|| panic!("{binary}: no access to the idempotency table (snapshots)"));
        assert!(snapshots.contains("dynamodb:GetItem") && snapshots.contains("dynamodb:PutItem"), "{binary}: GetItem and PutItem on the idempotency table");
    }
    assert!(appenders >= 30, "{appenders} functions append events");
}
