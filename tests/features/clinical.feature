Feature: The clinical rules
  Patients differ in urgency (ESI 1 the most urgent, 5 the least) and some need isolation;
  only doctors see the most urgent; staff work shifts with breaks; each kind of task has a
  target wait; and the scheduler can say why it decided what it did (DESIGN section 7). Each
  scenario runs under both policies, the Auditor checking every tick. A step that says "a
  porter" means whoever the scheduler sent; "porter-1" means that person.

  Scenario: 1. The more urgent patient gets the last free room
    Given a hospital with 1 room
    And 1 porter, 1 nurse, 1 doctor and 1 cleaner on duty
    And the scheduler explains its decisions
    When patient-1 (ESI 4) and patient-2 (ESI 1) arrive together
    Then patient-2 is admitted to A1
    And porter-1 escorts patient-2 to A1
    And patient-1 is referred to another hospital, because "the last free room went to more urgent patients"
    And nothing else is decided

  Scenario: 2. A porter takes the more urgent patient first, though another waited longer
    Given a hospital with 3 rooms
    And 1 porter, 1 nurse, 1 doctor and 1 cleaner on duty
    When patient-1 (ESI 3) arrives
    Then porter-1 escorts patient-1 to A1
    When patient-2 (ESI 5) arrives
    Then patient-2 waits in the waiting room for a porter
    When patient-3 (ESI 2) arrives
    Then patient-3 waits in the waiting room for a porter
    When porter-1 brings patient-1 to their room
    Then porter-1 escorts patient-3 to A3
    And patient-2 is still waiting for a porter

  Scenario: 3. Only a doctor sees an ESI 1 or 2 patient; a nurse sees the others
    Given a hospital with 3 rooms
    And 3 porters, 1 nurse, 1 doctor and 1 cleaner on duty
    When patient-1 (ESI 1) arrives
    And patient-2 (ESI 2) arrives
    And patient-3 (ESI 4) arrives
    And the porter brings patient-1 to their room
    Then doctor-1 is sent to see patient-1 in A1
    When the porter brings patient-2 to their room
    Then patient-2 waits for a doctor
    And nurse-1 stays free
    When the porter brings patient-3 to their room
    Then nurse-1 is sent to see patient-3 in A3
    When doctor-1 finishes seeing patient-1
    Then doctor-1 is sent to see patient-2 in A2

  Scenario: 4. A patient who needs isolation goes only to a room able to isolate, which then gets a terminal clean
    Given a hospital with 2 rooms
    And room A2 can isolate patients
    And 1 porter, 1 nurse, 0 doctors and 1 cleaner on duty
    And the scheduler explains its decisions
    When patient-1, who needs isolation, arrives
    Then patient-1 is admitted to A2
    When patient-2, who needs isolation, arrives
    Then patient-2 is referred to another hospital, because "needs isolation"
    When porter-1 brings patient-1 to their room
    And nurse-1 finishes seeing patient-1
    And porter-1 brings patient-1 to the exit
    Then patient-1 is discharged from A2
    And cleaner-1 is sent for a terminal clean of A2
    When cleaner-1 finishes cleaning A2
    Then A2 is available again

  Scenario: 5. Isolation rooms kept for the patients who need them
    Given a hospital with 2 rooms
    And room A2 can isolate patients
    And isolation rooms are kept for patients who need isolation
    And 2 porters, 1 nurse, 0 doctors and 1 cleaner on duty
    When patient-1 arrives
    Then patient-1 is admitted to A1
    When patient-2 arrives
    Then patient-2 is referred to another hospital
    When patient-3, who needs isolation, arrives
    Then patient-3 is admitted to A2
    When the porter brings patient-1 to their room
    And nurse-1 finishes seeing patient-1
    And the porter brings patient-1 to the exit
    Then cleaner-1 is sent to clean A1

  Scenario: 6. A porter whose shift ends finishes the task in hand, gets no new one, and is back for the next shift
    Given a hospital with 2 rooms
    And 1 porter, 1 nurse, 0 doctors and 1 cleaner on duty
    And porter-1 works from 00:00:00 to 00:00:10 of every minute
    When patient-1 arrives
    Then porter-1 escorts patient-1 to A1
    When 10 seconds pass
    Then porter-1 goes off duty
    When porter-1 brings patient-1 to their room
    Then nurse-1 is sent to see patient-1 in A1
    When patient-2 arrives
    Then patient-2 is admitted to A2
    And patient-2 waits in the waiting room for a porter
    When the clock reaches 00:01:00
    Then porter-1 comes back on duty
    And porter-1 escorts patient-2 to A2

  Scenario: 7. A nurse on a break gets no new patient; the doctor sees them
    Given a hospital with 2 rooms
    And 2 porters, 1 nurse, 1 doctor and 1 cleaner on duty
    And nurse-1 works from 00:00:00 to 00:01:00 of every minute, with a break from 00:00:02 to 00:00:30
    When patient-1 arrives
    And 2 seconds pass
    Then nurse-1 goes off duty
    When the porter brings patient-1 to their room
    Then doctor-1 is sent to see patient-1 in A1
    When the clock reaches 00:00:30
    Then nurse-1 comes back on duty

  Scenario: 8. A visit still waiting past its target is escalated, once
    Given a hospital with 2 rooms
    And 2 porters, 1 nurse, 0 doctors and 1 cleaner on duty
    And a visit should start within 3 seconds
    When patient-1 arrives
    And patient-2 arrives
    And the porter brings patient-1 to their room
    And the porter brings patient-2 to their room
    Then patient-2 waits for medical staff
    When 3 seconds pass
    Then nothing is escalated
    When 1 second passes
    Then the visit for patient-2 is escalated, after 4 s against a 3 s target
    When 10 seconds pass
    Then nothing is escalated

  Scenario: 9. Every referral and dispatch says why, and a patient's timeline reads as a story
    Given a hospital with 2 rooms
    And 2 porters, 1 nurse, 0 doctors and 1 cleaner on duty
    And the scheduler explains its decisions
    When patient-1 arrives
    Then a porter escorts patient-1 to A1, because "0 s walk" and "waited 0 s"
    When patient-2 arrives
    And patient-3 arrives
    Then patient-3 is referred to another hospital, because "ESI 3: all 2 rooms in use: 2 booked"
    When the porter brings patient-1 to their room
    Then nurse-1 is sent to see patient-1 in A1, because "nurse-1: 2 s walk" and "waited 0 s"
    And the timeline of patient-1 reads
      | what                                            |
      | patient-1 admitted to A1                        |
      | escort_in (task-1, patient-1, room A1) to porter-1 |
      | visit (task-3, patient-1, room A1) to nurse-1   |
    And the timeline of patient-3 reads
      | what                                                   |
      | patient-3 referred: ESI 3: all 2 rooms in use: 2 booked |
